#!/usr/bin/env python3
"""pbmaster (release build) against the buildbot 4.3.0 master, side by side, in one run.

Run through bench/compare.sh, which builds and installs everything first. Standard
library only. Everything listens on 127.0.0.1; every wait is bounded.

Measurements (see BENCHMARKS.md):
  a  50 consecutive trivial builds, and 50 forced at once, on one real buildbot-worker
  b  one step printing 100 MB to stdout on a real buildbot-worker
  c  master RSS idle, with 50 real workers, with 1,000 and 10,000 simulated workers
  d  200 simulated workers building back to back for 60 s
  m  pbfuzz (buildbot-worker profile) against each master
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, ".peers")
# The release build cargo made: CARGO_TARGET_DIR when it is set, as cargo does.
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
PBMASTER = os.path.join(TARGET, "release", "pbmaster")
# Built from the workspace member loadgen/ (cargo build --release -p pbmaster-loadgen).
LOADGEN = os.path.join(TARGET, "release", "pbmaster-loadgen")
# Built from the workspace member pbfuzz/.
PBFUZZ = os.path.join(TARGET, "release", "pbfuzz")
BUILDBOT = os.path.join(PEERS, "buildbot-master", "bin", "buildbot")
WORKER_VENV = os.path.join(PEERS, "buildbot-worker-4")
# More pbmaster config (--pbmaster-config), e.g. "[retention]\ncompress_logs = false".
PBMASTER_EXTRA = ""
MASTER_CFG = os.path.join(ROOT, "bench", "buildbot", "master.cfg")
PASSWORD = "bench"
# The bench master's API token: pbmaster reads it from the environment (token_env), and
# so do the CLI and the load generator; writes need it.
os.environ.setdefault("PBMASTER_TOKEN", secrets.token_hex(16))
TOKEN_CONFIG = [
    "[[api_token]]",
    'name = "bench"',
    'roles = ["admin"]',
    'token_env = "PBMASTER_TOKEN"',
    "",
]
STDOUT_100MB = (
    "yes 'the quick brown fox jumps over the lazy dog; the quick brown fox jumps over it'"
    " | head -c 100000000"
)
# How often a consecutive build's end is looked for in the master's database (the
# same for both masters): a coarser grid adds up to one period to every build, which
# only matters for the faster master.
CONSECUTIVE_POLL = 0.001
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_until(what, timeout, cond, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def cpu_seconds(pid):
    """utime + stime of one process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http(method, url, body=None, timeout=60, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Spec:
    """Workers and builders, written out for either master."""

    def __init__(self, workers, builders):
        self.workers = workers  # names
        self.builders = builders  # [(name, [workers], command)]


def trivial_spec(worker="bench"):
    return Spec([worker], [("trivial", [worker], "true"), ("stdout100", [worker], STDOUT_100MB)])


class PbMaster:
    kind = "pbmaster"

    def __init__(self, work, spec):
        self.dir = os.path.join(work, "pbmaster")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.pb_port, http_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{http_port}"
        lines = [
            "[master]",
            f'pb_listen = "127.0.0.1:{self.pb_port}"',
            f'http_listen = "127.0.0.1:{http_port}"',
            'data_dir = "data"',
            f"max_connections = {len(spec.workers) + 100}",
            "",
        ] + TOKEN_CONFIG + [PBMASTER_EXTRA, ""]
        for w in spec.workers:
            lines += ["[[worker]]", f'name = "{w}"', f'password = "{PASSWORD}"', ""]
        for name, workers, command in spec.builders:
            lines += [
                "[[builder]]",
                f'name = "{name}"',
                "workers = [" + ", ".join(f'"{w}"' for w in workers) + "]",
                "[[builder.step]]",
                f"command = {json.dumps(command)}",
                "",
            ]
        with open(os.path.join(self.dir, "master.toml"), "w") as f:
            f.write("\n".join(lines))
        self.logf = open(os.path.join(self.dir, "master.log"), "w")
        self.proc = subprocess.Popen(
            [PBMASTER, "start", "--config", os.path.join(self.dir, "master.toml")],
            stdout=self.logf, stderr=self.logf, stdin=subprocess.DEVNULL,
            env=dict(os.environ, RUST_LOG="warn"),
        )
        self.pid = self.proc.pid
        self.db = None
        wait_until("pbmaster API", 60, self._up)

    def _up(self):
        try:
            http("GET", self.api + "/api/builders", timeout=2)
            return True
        except OSError:
            return False

    def force_url(self):
        return self.api + "/api/builders/{builder}/force"

    def force(self, builder):
        url = f"{self.api}/api/builders/{builder}/force"
        return http("POST", url, {}, token=os.environ["PBMASTER_TOKEN"])["request_id"]

    def complete(self, request):
        # Read from the database, as for buildbot: the harness's polling costs neither
        # master anything.
        if self.db is None:
            self.db = sqlite3.connect(os.path.join(self.dir, "data", "pbmaster.sqlite"),
                                      timeout=30)
        rows = self.db.execute(
            "select complete, result from requests where id = ?", (request,)
        ).fetchall()
        return rows[0][1] if rows and rows[0][0] else None

    def attached(self):
        return sum(1 for w in http("GET", self.api + "/api/workers") if w["state"] == "attached")

    def stop(self):
        if self.db is not None:
            self.db.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


RESULTS = {0: "success", 1: "warnings", 2: "failure", 3: "skipped", 4: "exception",
           5: "retry", 6: "cancelled"}


class BuildbotMaster:
    kind = "buildbot"

    def __init__(self, work, spec):
        self.dir = os.path.join(work, "buildbot")
        shutil.rmtree(self.dir, ignore_errors=True)
        subprocess.run([BUILDBOT, "create-master", "-q", self.dir], check=True)
        shutil.copy(MASTER_CFG, os.path.join(self.dir, "master.cfg"))
        spec_path = os.path.join(self.dir, "spec.json")
        with open(spec_path, "w") as f:
            json.dump({
                "password": PASSWORD,
                "workers": spec.workers,
                "builders": [{"name": n, "workers": w, "command": c}
                             for n, w, c in spec.builders],
            }, f)
        self.pb_port, self.force_port = free_port(), free_port()
        env = dict(os.environ, BENCH_SPEC=spec_path, BENCH_PB_PORT=str(self.pb_port),
                   BENCH_FORCE_PORT=str(self.force_port), BENCH_BACKLOG="1024")
        # `buildbot start` daemonizes and waits (up to its own timeout) for the master
        # to be running; big configs take a while, so wait on the log ourselves too.
        subprocess.run([BUILDBOT, "start", self.dir], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        wait_until("buildbot master to run", 900, self._running, interval=0.5)
        with open(os.path.join(self.dir, "twistd.pid")) as f:
            self.pid = int(f.read().strip())
        self.db = sqlite3.connect(os.path.join(self.dir, "state.sqlite"), timeout=30)

    def _running(self):
        try:
            with open(os.path.join(self.dir, "twistd.log")) as f:
                text = f.read()
        except OSError:
            return False
        if "BuildMaster startup failed" in text:
            raise RuntimeError(f"buildbot did not start; see {self.dir}/twistd.log:\n{text[-2000:]}")
        return "BuildMaster is running" in text

    def force_url(self):
        return f"http://127.0.0.1:{self.force_port}/force/{{builder}}"

    def force(self, builder):
        r = http("POST", f"http://127.0.0.1:{self.force_port}/force/{builder}", {})
        return list(r["brids"].values())[0]

    def complete(self, request):
        rows = self.db.execute(
            "select complete, results from buildrequests where id = ?", (request,)
        ).fetchall()
        return RESULTS.get(rows[0][1], str(rows[0][1])) if rows and rows[0][0] else None

    def attached(self):
        return self.db.execute("select count(*) from connected_workers").fetchone()[0]

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
            wait_until("buildbot to stop", 60, lambda: not os.path.exists(f"/proc/{self.pid}"))
        except (OSError, TimeoutError):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        self.db.close()


def start_master(kind, work, spec):
    return PbMaster(work, spec) if kind == "pbmaster" else BuildbotMaster(work, spec)


class RealWorkers:
    """buildbot-worker 4.3.0 processes (twistd in the foreground, own process groups)."""

    def __init__(self, work, names, port):
        self.procs = []
        py_env = dict(os.environ, PYTHONUNBUFFERED="1")
        py_env.pop("PYTHONPATH", None)
        for name in names:
            basedir = os.path.join(work, "workers", name)
            shutil.rmtree(basedir, ignore_errors=True)
            os.makedirs(basedir)
            subprocess.run(
                [os.path.join(WORKER_VENV, "bin", "buildbot-worker"), "create-worker",
                 "--quiet", "--force", "--keepalive=0", "--maxdelay=1", basedir,
                 f"127.0.0.1:{port}", name, PASSWORD],
                check=True, env=py_env, stdin=subprocess.DEVNULL,
            )
        self.started = time.monotonic()
        for name in names:
            basedir = os.path.join(work, "workers", name)
            out = open(os.path.join(basedir, "twistd.out"), "w")
            self.procs.append(subprocess.Popen(
                [os.path.join(WORKER_VENV, "bin", "twistd"), "--nodaemon", "--no_save",
                 "--pidfile=", "-y", "buildbot.tac"],
                cwd=basedir, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                env=py_env, start_new_session=True,
            ))

    def cpu(self):
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        for p in self.procs:
            p.wait()


def median(xs):
    return statistics.median(xs) if xs else None


# ---- a, b: one real worker -------------------------------------------------------


def trivial_and_stdout(kind, work, runs, stdout_runs):
    spec = trivial_spec()
    m = start_master(kind, work, spec)
    w = None
    out = {"consecutive": [], "at_once": [], "stdout": []}
    try:
        w = RealWorkers(work, ["bench"], m.pb_port)
        wait_until("worker to attach", 120, lambda: m.attached() == 1, 0.1)
        wait_result(m, m.force("trivial"), 120)  # warm-up
        for _ in range(runs):
            c0, wc0, t0 = cpu_seconds(m.pid), w.cpu(), time.monotonic()
            for _ in range(50):
                wait_result(m, m.force("trivial"), 120, poll=CONSECUTIVE_POLL)
            t1, c1, wc1 = time.monotonic(), cpu_seconds(m.pid), w.cpu()
            out["consecutive"].append({"wall": t1 - t0, "cpu": c1 - c0, "worker_cpu": wc1 - wc0})
            log(f"  {kind}: 50 consecutive: {t1 - t0:.2f} s, master CPU {c1 - c0:.2f} s, "
                f"worker CPU {wc1 - wc0:.2f} s")
        for _ in range(runs):
            c0, t0 = cpu_seconds(m.pid), time.monotonic()
            ids = [m.force("trivial") for _ in range(50)]
            for i in ids:
                wait_result(m, i, 600, poll=0.02)
            t1, c1 = time.monotonic(), cpu_seconds(m.pid)
            out["at_once"].append({"wall": t1 - t0, "cpu": c1 - c0})
            log(f"  {kind}: 50 at once: {t1 - t0:.2f} s, master CPU {c1 - c0:.2f} s")
        for _ in range(stdout_runs):
            c0, wc0, t0 = cpu_seconds(m.pid), w.cpu(), time.monotonic()
            r = wait_result(m, m.force("stdout100"), 900, poll=0.05)
            t1, c1, wc1 = time.monotonic(), cpu_seconds(m.pid), w.cpu()
            out["stdout"].append({"wall": t1 - t0, "cpu": c1 - c0, "worker_cpu": wc1 - wc0,
                                  "result": r})
            log(f"  {kind}: 100 MB: {t1 - t0:.2f} s, master CPU {c1 - c0:.2f} s, "
                f"worker CPU {wc1 - wc0:.2f} s ({r})")
    finally:
        if w:
            w.stop()
        m.stop()
    return out


def wait_result(m, request, timeout, poll=0.05):
    return wait_until(f"request {request}", timeout, lambda: m.complete(request), poll)


def ingest(kind, work, mb):
    """One simulated worker prints `mb` MB of stdout in 64 KiB updates as fast as the
    master reads: the master's own log ingest rate, without a Python worker."""
    m = start_master(kind, work, Spec(["sim-0"], [("ingest", ["sim-0"], "true")]))
    out_path = os.path.join(work, f"ingest-{kind}.out")
    gen = None
    try:
        with open(out_path, "w") as out:
            gen = subprocess.Popen(
                [LOADGEN, "workers", "--master", f"127.0.0.1:{m.pb_port}", "-n", "1",
                 "--prefix", "sim", "--password", PASSWORD,
                 "--stdout-bytes", str(mb * 1_000_000), "--chunk-bytes", "65536"],
                stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )
        wait_until("simulated worker to attach", 60, lambda: m.attached() == 1, 0.1)
        c0, g0, t0 = cpu_seconds(m.pid), cpu_seconds(gen.pid), time.monotonic()
        r = wait_result(m, m.force("ingest"), 1800, poll=0.05)
        t1, c1, g1 = time.monotonic(), cpu_seconds(m.pid), cpu_seconds(gen.pid)
        store = store_sizes(m) if kind == "pbmaster" else {}
    finally:
        if gen:
            gen.send_signal(signal.SIGTERM)
            gen.wait(60)
        m.stop()
    res = {"mb": mb, "wall": t1 - t0, "cpu": c1 - c0, "loadgen_cpu": g1 - g0, "result": r,
           **store}
    log(f"  {kind}: ingest {mb} MB from a simulated worker: {res}")
    return res


def du(path):
    """Bytes of the files under `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def store_sizes(m):
    """pbmaster's data folder as the build ended and once its logs are compressed (the
    janitor does it in the background; bounded wait, none when compression is off)."""
    data = os.path.join(m.dir, "data")
    sizes = {"store_bytes_at_end": du(data)}
    if "compress_logs = false" not in PBMASTER_EXTRA:
        def packed():
            return not any(f.endswith(".log") for _, _, fs in os.walk(data) for f in fs)
        t = time.monotonic()
        wait_until("logs compressed", 600, packed, 0.05)
        sizes["compress_s"] = time.monotonic() - t
    sizes["store_bytes"] = du(data)
    sizes["log_file_bytes"] = du(os.path.join(data, "logs"))
    return sizes


# ---- c: memory and attach ----------------------------------------------------------


def idle_spec(names):
    """Workers and one builder (buildbot refuses a config without builders)."""
    return Spec(names, [("idle", [names[0]], "true")])


def memory_real(kind, work, n):
    names = [f"real-{i}" for i in range(n)]
    m = start_master(kind, work, idle_spec(names))
    time.sleep(2)
    idle = rss_kb(m.pid)
    w = None
    try:
        w = RealWorkers(work, names, m.pb_port)
        wait_until(f"{n} real workers", 600, lambda: m.attached() == n, 0.2)
        t = time.monotonic() - w.started
        time.sleep(2)
        rss = rss_kb(m.pid)
    finally:
        if w:
            w.stop()
        m.stop()
    log(f"  {kind}: {n} real workers attached in {t:.1f} s; RSS {idle} -> {rss} KB")
    return {"idle_kb": idle, "rss_kb": rss, "attach_s": t, "n": n}


def memory_simulated(kind, work, n):
    names = [f"sim-{i}" for i in range(n)]
    m = start_master(kind, work, idle_spec(names))
    time.sleep(2)
    idle = rss_kb(m.pid)
    c0 = cpu_seconds(m.pid)
    out_path = os.path.join(work, f"loadgen-{kind}-{n}.out")
    res = {"idle_kb": idle, "n": n}
    with open(out_path, "w") as out:
        gen = subprocess.Popen(
            [LOADGEN, "workers", "--master", f"127.0.0.1:{m.pb_port}", "-n", str(n),
             "--prefix", "sim", "--password", PASSWORD, "--attach-timeout", "600",
             "--hold", "600"],
            stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        try:
            ev = wait_until("loadgen attach event", 660, lambda: first_event(out_path), 0.2)
            res["event"] = ev["event"]
            res["attached"] = ev["attached"]
            res["attach_s"] = ev["t"]
            time.sleep(3)
            res["rss_kb"] = rss_kb(m.pid)
            res["cpu_s"] = cpu_seconds(m.pid) - c0
        finally:
            gen.send_signal(signal.SIGTERM)
            try:
                gen.wait(60)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait()
            m.stop()
    report = last_json(out_path)
    if report:
        res["errors"] = report.get("errors")
        res["reconnects"] = report.get("reconnects")
    log(f"  {kind}: {n} simulated: {res}")
    return res


def first_event(path):
    try:
        with open(path) as f:
            for line in f:
                try:
                    return json.loads(line)
                except ValueError:
                    pass
    except OSError:
        pass
    return None


def json_lines(path):
    """The JSON values of a file's lines, skipping lines that are not JSON."""
    try:
        with open(path) as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    pass
    except OSError:
        pass


def last_json(path):
    found = None
    for found in json_lines(path):
        pass
    return found


# ---- d: many busy workers ----------------------------------------------------------


def busy(kind, work, n, seconds, pause=0.0):
    names = [f"sim-{i}" for i in range(n)]
    spec = Spec(names, [(f"b-{i}", [f"sim-{i}"], "true") for i in range(n)])
    m = start_master(kind, work, spec)
    out_path = os.path.join(work, f"busy-{kind}.out")
    c0 = cpu_seconds(m.pid)
    try:
        with open(out_path, "w") as out:
            gen = subprocess.run(
                [LOADGEN, "workers", "--master", f"127.0.0.1:{m.pb_port}", "-n", str(n),
                 "--prefix", "sim", "--password", PASSWORD, "--force-url", m.force_url(),
                 "--duration", str(seconds), "--hold", "2", "--pause", str(pause)],
                stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                timeout=seconds + 900,
            )
        cpu = cpu_seconds(m.pid) - c0
    finally:
        m.stop()
    r = last_json(out_path) or {}
    res = {
        "n": n, "seconds": seconds, "pause": pause, "exit": gen.returncode,
        "builds": r.get("builds_completed"), "latency_ms": r.get("latency_ms"),
        "errors": r.get("errors"), "cpu_s": cpu, "elapsed_s": r.get("elapsed_s"),
    }
    log(f"  {kind}: {n} busy workers: {res}")
    return res


# ---- m: pbfuzz ----------------------------------------------------------------------


def mutation(kind, work, budget, minimize_time=60):
    """pbfuzz's table and random cases against a master, logged in as worker mut-0."""
    m = start_master(kind, work, idle_spec(["mut-0"]))
    out_path = os.path.join(work, f"pbfuzz-{kind}.json")
    try:
        with open(out_path, "w") as out:
            subprocess.run(
                [PBFUZZ, "run", "--profile", "buildbot-worker",
                 "--address", f"127.0.0.1:{m.pb_port}", "--user", "mut-0",
                 "--password", PASSWORD, "--budget", str(budget), "--pid", str(m.pid),
                 "--minimize-time", str(minimize_time)],
                stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                timeout=budget + 3600,
            )
        alive = os.path.exists(f"/proc/{m.pid}")
    finally:
        m.stop()
    r = last_json(out_path) or {}
    r["master_alive_after"] = alive
    lines = [c for c in json_lines(out_path) if isinstance(c, dict)]
    r["cases"] = [{k: c.get(k) for k in ("case", "outcome", "reply", "detail", "bytes")}
                  for c in lines if c.get("event") == "case"]
    r["minimized"] = [c for c in lines if c.get("event") == "minimized"]
    return r


# ---- report -----------------------------------------------------------------------


def ratio(p, b, higher_is_better=True):
    if not p or not b:
        return "n/a"
    return f"{(p / b if higher_is_better else b / p):.1f}x"


def fmt(x, digits=2):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(res):
    lines = []
    p, b = res.get("pbmaster", {}), res.get("buildbot", {})

    if "ab" in p or "ab" in b:
        def builds_per_s(side, key):
            runs = side.get("ab", {}).get(key, [])
            return median([50 / r["wall"] for r in runs])

        def cpu_per_build(side, key):
            runs = side.get("ab", {}).get(key, [])
            return median([r["cpu"] / 50 for r in runs])

        lines += ["### a. Trivial builds on one real buildbot-worker 4.3.0", "",
                  "| measurement | pbmaster | buildbot 4.3.0 | ratio |", "|---|---:|---:|---:|"]
        for key, label in (("consecutive", "50 consecutive"), ("at_once", "50 forced at once")):
            pv, bv = builds_per_s(p, key), builds_per_s(b, key)
            lines.append(f"| {label}: builds/s | {fmt(pv, 1)} | {fmt(bv, 1)} | {ratio(pv, bv)} |")
            pc, bc = cpu_per_build(p, key), cpu_per_build(b, key)
            lines.append(f"| {label}: master CPU s per build | {fmt(pc, 4)} | {fmt(bc, 4)} | "
                         f"{ratio(pc, bc, False)} |")
            if key == "consecutive":
                pw = median([r["worker_cpu"] / 50 * 1000 for r in p.get("ab", {}).get(key, [])])
                bw = median([r["worker_cpu"] / 50 * 1000 for r in b.get("ab", {}).get(key, [])])
                lines.append(f"| {label}: worker (twistd) CPU ms per build | {fmt(pw, 1)} | "
                             f"{fmt(bw, 1)} | |")
            pm = median([r["wall"] / 50 * 1000 for r in p.get("ab", {}).get(key, [])])
            bm = median([r["wall"] / 50 * 1000 for r in b.get("ab", {}).get(key, [])])
            lines.append(f"| {label}: ms per build | {fmt(pm, 1)} | {fmt(bm, 1)} | "
                         f"{ratio(pm, bm, False)} |")
        lines += ["", "### b. 100 MB of stdout from one step on a real buildbot-worker 4.3.0", "",
                  "| measurement | pbmaster | buildbot 4.3.0 | ratio |", "|---|---:|---:|---:|"]
        ps, bs = p.get("ab", {}).get("stdout", []), b.get("ab", {}).get("stdout", [])
        for label, f, hib, d in (
            ("wall time, s", lambda r: r["wall"], False, 1),
            ("MB/s through the master", lambda r: 100 / r["wall"], True, 1),
            ("master CPU s", lambda r: r["cpu"], False, 2),
            ("master CPU ms per MB", lambda r: r["cpu"] * 10, False, 1),
            ("worker (twistd) CPU s", lambda r: r["worker_cpu"], None, 1),
        ):
            pv, bv = median([f(r) for r in ps]), median([f(r) for r in bs])
            rt = ratio(pv, bv, hib) if hib is not None else ""
            lines.append(f"| {label} | {fmt(pv, d)} | {fmt(bv, d)} | {rt} |")
        lines.append("")
    if "ingest" in p or "ingest" in b:
        pi, bi = p.get("ingest", {}), b.get("ingest", {})
        mb = pi.get("mb") or bi.get("mb")
        lines += [f"### b2. {mb} MB of stdout from one simulated worker (64 KiB updates)", "",
                  "| measurement | pbmaster | buildbot 4.3.0 | ratio |", "|---|---:|---:|---:|"]
        for label, f, hib, d in (
            ("wall time, s", lambda r: r["wall"], False, 2),
            ("MB/s through the master", lambda r: r["mb"] / r["wall"], True, 1),
            ("master CPU s", lambda r: r["cpu"], False, 2),
            ("MB per master CPU second", lambda r: r["mb"] / r["cpu"], True, 1),
            ("load generator CPU s", lambda r: r["loadgen_cpu"], None, 2),
        ):
            pv = f(pi) if pi.get("wall") and pi.get("cpu") else None
            bv = f(bi) if bi.get("wall") and bi.get("cpu") else None
            rt = ratio(pv, bv, hib) if hib is not None else ""
            lines.append(f"| {label} | {fmt(pv, d)} | {fmt(bv, d)} | {rt} |")
        lines.append("")

    if "mem" in p or "mem" in b:
        lines += ["### c. Memory and attach time", "",
                  "| measurement | pbmaster | buildbot 4.3.0 | ratio |", "|---|---:|---:|---:|"]
        pm, bm = p.get("mem", {}), b.get("mem", {})
        pi, bi = pm.get("idle_kb"), bm.get("idle_kb")
        lines.append(f"| RSS idle (1 worker configured), MB | {fmt(pi and pi / 1024, 1)} | "
                     f"{fmt(bi and bi / 1024, 1)} | {ratio(pi, bi, False)} |")
        for key in sorted(set(pm) | set(bm)):
            if not key.startswith(("real-", "sim-")):
                continue
            pr, br = pm.get(key, {}), bm.get(key, {})
            n = pr.get("n") or br.get("n")
            what = "real workers" if key.startswith("real") else "simulated workers"

            def per(r):
                if r.get("rss_kb") is None or r.get("attached") not in (None, r.get("n")):
                    return None
                return (r["rss_kb"] - r["idle_kb"]) / r["n"]

            lines.append(f"| {n} {what}: RSS attached, MB | "
                         f"{fmt(pr.get('rss_kb') and pr['rss_kb'] / 1024, 1)} | "
                         f"{fmt(br.get('rss_kb') and br['rss_kb'] / 1024, 1)} | "
                         f"{ratio(pr.get('rss_kb'), br.get('rss_kb'), False)} |")
            lines.append(f"| {n} {what}: KB per attached worker | {fmt(per(pr), 1)} | "
                         f"{fmt(per(br), 1)} | {ratio(per(pr), per(br), False)} |")
            lines.append(f"| {n} {what}: all attached after, s | {fmt(pr.get('attach_s'))} | "
                         f"{fmt(br.get('attach_s'))} | "
                         f"{ratio(pr.get('attach_s'), br.get('attach_s'), False)} |")
            if "attached" in pr or "attached" in br:
                lines.append(f"| {n} {what}: attached / errors | "
                             f"{pr.get('attached')} / {sum((pr.get('errors') or {}).values())} | "
                             f"{br.get('attached')} / {sum((br.get('errors') or {}).values())} | |")
        lines.append("")

    if "busy" in p or "busy" in b:
        pb_, bb_ = p.get("busy", {}), b.get("busy", {})
        n = pb_.get("n") or bb_.get("n")
        s = pb_.get("seconds") or bb_.get("seconds")
        pause = pb_.get("pause") or bb_.get("pause") or 0
        how = f"with {pause} s between builds" if pause else "back to back"
        lines += [f"### d. {n} simulated workers building {how} for {s} s", "",
                  "| measurement | pbmaster | buildbot 4.3.0 | ratio |", "|---|---:|---:|---:|"]
        pv = pb_.get("builds") and pb_["builds"] / s
        bv = bb_.get("builds") and bb_["builds"] / s
        lines.append(f"| builds completed | {fmt(pb_.get('builds'))} | {fmt(bb_.get('builds'))} | |")
        lines.append(f"| builds/s | {fmt(pv, 1)} | {fmt(bv, 1)} | {ratio(pv, bv)} |")
        for q in ("p50", "p99", "max"):
            pl = (pb_.get("latency_ms") or {}).get(q)
            bl = (bb_.get("latency_ms") or {}).get(q)
            lines.append(f"| request → first command, {q}, ms | {fmt(pl, 1)} | {fmt(bl, 1)} | "
                         f"{ratio(pl, bl, False)} |")
        pc = pb_.get("cpu_s") and pb_.get("builds") and pb_["cpu_s"] / pb_["builds"] * 1000
        bc = bb_.get("cpu_s") and bb_.get("builds") and bb_["cpu_s"] / bb_["builds"] * 1000
        lines.append(f"| master CPU ms per build | {fmt(pc, 2)} | {fmt(bc, 1)} | "
                     f"{ratio(pc, bc, False)} |")
        lines.append("")

    if "mutate" in p or "mutate" in b:
        lines += ["### pbfuzz, buildbot-worker profile", "",
                  "| outcome | pbmaster | buildbot 4.3.0 |", "|---|---:|---:|"]
        pm, bm = p.get("mutate", {}), b.get("mutate", {})
        for k in ("answered", "dropped", "stalled", "died", "login_failed", "garbled"):
            lines.append(f"| {k} | {(pm.get('summary') or {}).get(k, 0)} | "
                         f"{(bm.get('summary') or {}).get(k, 0)} |")
        lines.append(f"| cases run | {pm.get('cases_run')} | {bm.get('cases_run')} |")
        lines.append(f"| cases per second | {fmt(pm.get('cases_per_second'), 1)} | "
                     f"{fmt(bm.get('cases_per_second'), 1)} |")
        lines.append(f"| master process alive afterwards | {pm.get('master_alive_after')} | "
                     f"{bm.get('master_alive_after')} |")
        lines.append(f"| a worker could still log in afterwards | {pm.get('healthy_after')} | "
                     f"{bm.get('healthy_after')} |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="runs per cheap measurement")
    ap.add_argument("--stdout-runs", type=int, default=1)
    ap.add_argument("--pbmaster-config", default="",
                    help='more pbmaster TOML, e.g. "[retention]\\ncompress_logs = false"')
    ap.add_argument("--only", default="a,b,c,d,m",
                    help="a: real worker builds and 100 MB; b: simulated ingest; c; d; m")
    ap.add_argument("--ingest-mb", type=int, default=200)
    ap.add_argument("--masters", default="pbmaster,buildbot")
    ap.add_argument("--real-workers", type=int, default=50)
    ap.add_argument("--simulated", default="1000,10000")
    ap.add_argument("--busy-workers", type=int, default=200)
    ap.add_argument("--busy-seconds", type=int, default=60)
    ap.add_argument("--busy-pause", type=float, default=0.0,
                    help="seconds each busy worker waits between builds (0: back to back)")
    ap.add_argument("--mutate-budget", type=int, default=120)
    ap.add_argument("--out", default=None, help="write raw results as JSON here")
    args = ap.parse_args()
    only = set(args.only.split(","))
    global PBMASTER_EXTRA
    PBMASTER_EXTRA = args.pbmaster_config
    work = tempfile.mkdtemp(prefix="pbm-compare-")
    res = {}

    def save():
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1)

    def on_term(*_):
        raise SystemExit(1)

    # Stopped from outside: still stop the masters and keep what was measured.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        for kind in args.masters.split(","):
            r = res.setdefault(kind, {})
            log(f"== {kind}")
            if "a" in only:
                r["ab"] = trivial_and_stdout(kind, work, args.runs, args.stdout_runs)
                save()
            if "b" in only:
                r["ingest"] = ingest(kind, work, args.ingest_mb)
                save()
            if "c" in only:
                mem = r.setdefault("mem", {})
                one = start_master(kind, work, trivial_spec())
                time.sleep(2)
                mem["idle_kb"] = rss_kb(one.pid)
                one.stop()
                if args.real_workers:
                    mem[f"real-{args.real_workers:05}"] = memory_real(kind, work, args.real_workers)
                for n in [int(x) for x in args.simulated.split(",") if x]:
                    mem[f"sim-{n:05}"] = memory_simulated(kind, work, n)
                    save()
            if "d" in only:
                r["busy"] = busy(kind, work, args.busy_workers, args.busy_seconds,
                                 args.busy_pause)
                save()
            if "m" in only:
                r["mutate"] = mutation(kind, work, args.mutate_budget)
                save()
    finally:
        save()
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(res))


if __name__ == "__main__":
    main()
