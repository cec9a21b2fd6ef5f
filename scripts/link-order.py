#!/usr/bin/env python3
"""Writes link/pbmaster.order: the functions a release pbmaster runs, in the order the
linker should place them (build.rs hands the file to the linker).

Why: the kernel maps a binary's code 64 KB at a time around each page a process
touches. Left in the compiler's order, the few thousand functions a master runs at
start and while idle are spread over most of its 13 MB of code, so nearly all of it
ends up resident. Placed together, they fill about 2 MB.

How: the release binary runs under valgrind's callgrind, which lists every function
executed. Phase 1 is a start with workers, builders and an API token, one API read and
three seconds idle; phase 2 (with --builds, on by default) attaches a real
buildbot-worker 4.3.0 and runs trivial builds. The file lists phase 1's functions
first, most executed first, then phase 2's new ones.

Symbol names carry hashes that change with the compiler and the dependencies'
versions: after either changes, run this again (names no longer found only lose their
place; the binary is correct either way). `--check` reports how many listed names the
current release binary still has.

Usage: scripts/link-order.py [--no-builds] | --check
Needs valgrind (callgrind, callgrind_control) and, for phase 2, .peers (installed by
scripts/install-peers.sh).
"""

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"))
BINARY = os.path.join(TARGET, "release", "pbmaster")
ORDER = os.path.join(ROOT, "link", "pbmaster.order")
WORKER_VENV = os.path.join(ROOT, ".peers", "buildbot-worker-4")
TOKEN = secrets.token_hex(16)
HEADER = """\
# Functions a release pbmaster runs at start and while idle, then those a build runs:
# the linker places them in this order (build.rs). Written by scripts/link-order.py;
# run it again after a compiler or dependency update.
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, timeout, cond):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def http(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else body)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def answers(url):
    try:
        http("GET", url)
        return True
    except OSError:
        return False


def config(pb_port, http_port):
    workers = "".join(f'[[worker]]\nname = "w{i}"\npassword = "pw"\n\n' for i in range(50))
    return f"""[master]
pb_listen = "127.0.0.1:{pb_port}"
http_listen = "127.0.0.1:{http_port}"
data_dir = "data"

[[api_token]]
name = "order"
roles = ["admin"]
token_env = "ORDER_TOKEN"

{workers}[[builder]]
name = "trivial"
workers = ["w0"]
[[builder.step]]
command = "true"
"""


def functions(dump):
    """Function names callgrind saw executed in `dump` inside the pbmaster binary,
    with their instruction counts."""
    # callgrind names an object or function once, as "(id) name", then by "(id)".
    names = {"ob": {}, "fn": {}}
    counts = {}
    ours = False
    current = None
    for line in open(dump, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^c?(ob|fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, i, name = m.groups()
            if name:
                names[kind][i] = name
            if line.startswith("ob="):
                ours = os.path.basename(names["ob"][i]) == "pbmaster"
            elif line.startswith("fn="):
                current = names["fn"][i] if ours else None
                if current:
                    counts.setdefault(current, 0)
            continue
        if current and (line[:1].isdigit() or line[:1] in "+-*"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                counts[current] += int(parts[1])
    # callgrind marks recursion depth with 'N; the linker wants the plain name.
    plain = {}
    for name, n in counts.items():
        base = re.sub(r"'\d+$", "", name)
        plain[base] = plain.get(base, 0) + n
    # Addresses callgrind could not name, and its name for the code before main.
    for name in [n for n in plain if n.startswith("0x") or n == "(below main)"]:
        del plain[name]
    return plain


def start_worker(work, port):
    basedir = os.path.join(work, "worker")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [os.path.join(WORKER_VENV, "bin", "buildbot-worker"), "create-worker", "--quiet",
         "--force", "--keepalive=0", "--maxdelay=1", basedir, f"127.0.0.1:{port}", "w0", "pw"],
        check=True, env=env, stdin=subprocess.DEVNULL,
    )
    out = open(os.path.join(basedir, "twistd.out"), "w")
    return subprocess.Popen(
        [os.path.join(WORKER_VENV, "bin", "twistd"), "--nodaemon", "--no_save", "--pidfile=",
         "-y", "buildbot.tac"],
        cwd=basedir, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )


def profile(work, builds):
    pb_port, http_port = free_port(), free_port()
    api = f"http://127.0.0.1:{http_port}/api"
    with open(os.path.join(work, "master.toml"), "w") as f:
        f.write(config(pb_port, http_port))
    out = os.path.join(work, "callgrind.out")
    log = open(os.path.join(work, "master.log"), "w")
    master = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}",
         BINARY, "start", "--config", "master.toml"],
        cwd=work, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        env=dict(os.environ, ORDER_TOKEN=TOKEN, RUST_LOG="info"),
    )
    worker = None
    try:
        wait_until("the master's API", 300, lambda: answers(api + "/builders"))
        time.sleep(3)
        subprocess.run(["callgrind_control", "--dump=idle", str(master.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        if builds:
            worker = start_worker(work, pb_port)
            wait_until("the worker", 300, lambda: b'"attached"' in http("GET", api + "/workers"))
            for _ in range(builds):
                body = http("POST", api + "/builders/trivial/force", b"{}")
                request = re.search(rb'"request_id":(\d+)', body).group(1).decode()
                wait_until("a build", 300, lambda: b'"complete":true' in
                           http("GET", f"{api}/buildrequests/{request}"))
    finally:
        if worker:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        master.send_signal(signal.SIGTERM)
        master.wait(300)
    # Each dump names its part: 1 is the idle dump, the one at exit comes after.
    dumps = sorted((part(os.path.join(work, p)), os.path.join(work, p))
                   for p in os.listdir(work) if p.startswith("callgrind.out"))
    return [d for n, d in dumps if n == 1], [d for n, d in dumps if n != 1]


def part(dump):
    with open(dump, errors="replace") as f:
        for line in f:
            if line.startswith("part:"):
                return int(line.split(":")[1])
            if line.startswith("fn="):
                break
    return 0


def ordered(idle, rest):
    names, seen = [], set()
    for phase, dumps in (("start and idle", idle), ("builds", rest)):
        counts = {}
        for d in dumps:
            for name, n in functions(d).items():
                counts[name] = counts.get(name, 0) + n
        for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if name not in seen:
                seen.add(name)
                names.append(name)
        print(f"{phase}: {len(counts)} functions ({', '.join(map(os.path.basename, dumps))})")
    return names


def listed():
    with open(ORDER) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def check():
    present = set()
    nm = subprocess.run(["nm", "--defined-only", BINARY], check=True, capture_output=True,
                        text=True).stdout
    for line in nm.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            present.add(parts[2])
    names = listed()
    found = sum(1 for n in names if n in present)
    print(f"link order: {found} of {len(names)} listed functions found in {BINARY}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only report the listed names found")
    p.add_argument("--no-builds", action="store_true", help="phase 1 only")
    args = p.parse_args()
    if args.check:
        check()
        return
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed")
    subprocess.run(["cargo", "build", "--release", "--bin", "pbmaster"], cwd=ROOT, check=True)
    if not args.no_builds:
        subprocess.run([os.path.join(ROOT, "scripts", "install-peers.sh"), "buildbot-worker-4"],
                       check=True)
    with tempfile.TemporaryDirectory(prefix="pbmaster-order-") as work:
        idle, rest = profile(work, 0 if args.no_builds else 5)
        names = ordered(idle, rest)
    os.makedirs(os.path.dirname(ORDER), exist_ok=True)
    with open(ORDER, "w") as f:
        f.write(HEADER)
        f.write("\n".join(names) + "\n")
    print(f"wrote {len(names)} functions to {os.path.relpath(ORDER, ROOT)}")
    check()


if __name__ == "__main__":
    main()
