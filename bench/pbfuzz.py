#!/usr/bin/env python3
"""pbfuzz against pbmaster, a plain Twisted PB service and the buildbot 4.3.0 master.

Run through bench/pbfuzz.sh, which builds and installs everything first. Standard
library only; everything listens on 127.0.0.1. For each target: the outcomes, cases
per second (case time only, minimizing excluded), where the targets differ, and the
minimized reproducers of every case that died or stalled. Prints Markdown.

Targets:
  pbmaster  the release build, logged in as buildbot worker mut-0 (buildbot-worker profile)
  buildbot  buildbot 4.3.0 on Twisted (bench/buildbot/master.cfg), the same profile
  twisted   tests/support/twisted_pb.py server in the twisted-py3 venv (twisted-echo profile)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402  (the masters, as the side-by-side benchmark runs them)

SESSION = os.path.join(c.ROOT, "fixtures", "sessions", "worker-4.3.0")
TWISTED_PY = os.path.join(c.PEERS, "twisted-py3", "bin", "python")
TWISTED_PB = os.path.join(c.ROOT, "tests", "support", "twisted_pb.py")


class TwistedPb:
    """The plain Twisted PB service of the tests; stops when its stdin closes."""

    def __init__(self, work):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)
        self.log = open(os.path.join(work, "twisted.log"), "w")
        self.proc = subprocess.Popen([TWISTED_PY, TWISTED_PB, "server"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"twisted_pb.py did not start: {line!r}")
        self.pb_port = int(line.split()[1])
        self.pid = self.proc.pid

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def fuzz(target, args, out_path):
    """Runs pbfuzz against `target` (address, pid known) with `args`; its JSON lines."""
    cmd = [c.PBFUZZ, "run", "--address", f"127.0.0.1:{target.pb_port}", "--pid",
           str(target.pid)] + args
    c.log("  " + " ".join(cmd))
    with open(out_path, "w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                       timeout=7200)
    return [j for j in c.json_lines(out_path) if isinstance(j, dict)]


def load(kind, out_dir):
    """A target's results from the JSON lines a run left in out_dir."""
    path = os.path.join(out_dir, f"pbfuzz-{kind}.jsonl")
    lines = [j for j in c.json_lines(path) if isinstance(j, dict)]
    summary = next((j for j in reversed(lines) if j.get("event") == "summary"), {})
    return {"summary": summary, "alive": None,
            "cases": {j["case"]: j for j in lines if j.get("event") == "case"},
            "minimized": [j for j in lines if j.get("event") == "minimized"]}


def one(kind, work, out_dir, a):
    common = ["--seed", str(a.seed), "--random", str(a.random), "--replay", SESSION,
              "--replay-cases", str(a.replay_cases), "--reply-timeout", str(a.reply_timeout),
              "--budget", str(a.budget), "--minimize-time", str(a.minimize_time)]
    if kind == "twisted":
        target = TwistedPb(work)
        args = ["--profile", "twisted-echo"] + common
    else:
        target = c.start_master(kind, work, c.idle_spec(["mut-0"]))
        args = ["--profile", "buildbot-worker", "--user", "mut-0", "--password", c.PASSWORD] + common
    try:
        lines = fuzz(target, args, os.path.join(out_dir, f"pbfuzz-{kind}.jsonl"))
        alive = os.path.exists(f"/proc/{target.pid}")
    finally:
        target.stop()
    summary = next((j for j in reversed(lines) if j.get("event") == "summary"), {})
    return {"summary": summary, "alive": alive,
            "cases": {j["case"]: j for j in lines if j.get("event") == "case"},
            "minimized": [j for j in lines if j.get("event") == "minimized"]}


def hexes(bytes_json, limit=48):
    parts = []
    for run in bytes_json or []:
        h = run.get("hex", "")
        h = h if len(h) <= limit else h[:limit] + "…"
        parts.append(h if run.get("repeat", 1) == 1 else f"{h} ×{run['repeat']}")
    return " ".join(parts) or "(none)"


def markdown(res, a):
    kinds = list(res)
    names = {"pbmaster": "pbmaster", "buildbot": "buildbot 4.3.0", "twisted": "Twisted PB"}
    out = [f"seed {a.seed}: the 88 table cases, {a.random} random, {a.replay_cases} replayed "
           f"from fixtures/sessions/worker-4.3.0; reply timeout {a.reply_timeout} s.", "",
           "| | " + " | ".join(names[k] for k in kinds) + " |",
           "|---|" + "---:|" * len(kinds)]
    for o in ("answered", "dropped", "stalled", "died", "login_failed", "garbled"):
        out.append(f"| {o} | " + " | ".join(
            str((res[k]["summary"].get("summary") or {}).get(o, 0)) for k in kinds) + " |")
    for key, label in (("cases_run", "cases run"), ("case_seconds", "seconds running cases"),
                       ("cases_per_second", "cases per second")):
        out.append(f"| {label} | " + " | ".join(c.fmt(res[k]["summary"].get(key), 1)
                                               for k in kinds) + " |")
    def quick_rate(k):
        quick = [x["seconds"] for x in res[k]["cases"].values()
                 if x["outcome"] != "stalled" and isinstance(x.get("seconds"), (int, float))]
        return len(quick) / sum(quick) if quick and sum(quick) > 0 else None

    out.append("| cases per second, stalls left out | " + " | ".join(
        c.fmt(quick_rate(k), 1) for k in kinds) + " |")
    out.append("| target alive afterwards | " + " | ".join(str(res[k]["alive"]) for k in kinds)
               + " |")
    out.append("| logs in afterwards | " + " | ".join(
        str(res[k]["summary"].get("healthy_after")) for k in kinds) + " |")
    out.append("")
    base = kinds[0]
    for other in kinds[1:]:
        diff, skipped = {}, 0
        for name, case in res[base]["cases"].items():
            theirs = res[other]["cases"].get(name)
            if not theirs:
                continue
            # A random or replayed case is the same case only with the same bytes (the
            # session's ids and the profile's method go into them).
            if name.startswith(("random/", "replay/")) and theirs.get("bytes") != case.get("bytes"):
                skipped += 1
                continue
            if theirs["outcome"] != case["outcome"]:
                diff.setdefault((case["outcome"], theirs["outcome"]), []).append(name)
        out += [f"Where {names[base]} and {names[other]} differ "
                f"({sum(len(v) for v in diff.values())} cases; {skipped} seeded cases "
                f"not compared, their bytes differ):", ""]
        for (x, y), cases in sorted(diff.items()):
            out.append(f"- {x} on {names[base]}, {y} on {names[other]} ({len(cases)}): "
                       + ", ".join(f"`{n}`" for n in cases))
        out.append("")
    out += ["Minimized reproducers (cases that died or stalled):", "",
            "| target | case | outcome | bytes → minimized | minimized bytes (hex) |",
            "|---|---|---|---:|---|"]
    for k in kinds:
        for m in res[k]["minimized"]:
            done = "" if m.get("complete") else " (budget ran out)"
            out.append(f"| {names[k]} | `{m['case']}` | {m['outcome']} | "
                       f"{m['original_len']} → {m['len']}{done} | `{hexes(m['bytes'])}` |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="pbmaster,twisted,buildbot")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random", type=int, default=50)
    ap.add_argument("--replay-cases", type=int, default=30)
    ap.add_argument("--reply-timeout", type=float, default=3.0)
    ap.add_argument("--budget", type=int, default=1200)
    ap.add_argument("--minimize-time", type=int, default=60)
    ap.add_argument("--out-dir", default=None, help="keep each target's JSON lines here")
    ap.add_argument("--from-dir", default=None,
                    help="only print the report of the runs saved in this --out-dir")
    a = ap.parse_args()
    if a.from_dir:
        print(markdown({k: load(k, a.from_dir) for k in a.targets.split(",")}, a))
        return
    work = tempfile.mkdtemp(prefix="pbm-pbfuzz-")
    out_dir = a.out_dir or work
    os.makedirs(out_dir, exist_ok=True)
    res = {}
    try:
        for kind in a.targets.split(","):
            c.log(f"== {kind}")
            started = time.monotonic()
            res[kind] = one(kind, work, out_dir, a)
            c.log(f"  {time.monotonic() - started:.0f} s: {res[kind]['summary']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(res, a))


if __name__ == "__main__":
    main()
