#!/usr/bin/env python3
"""The cost of a wrong-password flood on the PB port.

200 simulated workers build on pbmaster with a pause between builds (scenario d of
compare.py) for SECONDS, twice: once quietly, once while one address sends ATTEMPTS
logins with a wrong password for an existing worker name (`pbmaster-loadgen flood`,
each attempt a new connection that logs in, sends its wrong response and closes).
Prints the attached workers' request -> first command latency and the master's CPU
for both runs, and the flood's rate. Needs `cargo build --release -p pbmaster -p
pbmaster-loadgen` (compare.py's binaries).

Usage: bench/login-flood.py [--workers 200] [--seconds 40] [--attempts 10000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the bench's helpers: masters, specs, CPU readings)


def run(work, n, seconds, pause, attempts, concurrency):
    names = [f"sim-{i}" for i in range(n)] + ["victim"]
    spec = compare.Spec(names, [(f"b-{i}", [f"sim-{i}"], "true") for i in range(n)])
    m = compare.start_master("pbmaster", work, spec)
    busy_out = os.path.join(work, "busy.out")
    flood_out = os.path.join(work, "flood.out")
    try:
        with open(busy_out, "w") as out:
            busy = subprocess.Popen(
                [compare.LOADGEN, "workers", "--master", f"127.0.0.1:{m.pb_port}",
                 "-n", str(n), "--prefix", "sim", "--password", compare.PASSWORD,
                 "--force-url", m.force_url(), "--duration", str(seconds), "--hold", "2",
                 "--pause", str(pause)],
                stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )
        # The flood starts once the workers are attached and building.
        time.sleep(5)
        c0, flood = compare.cpu_seconds(m.pid), None
        if attempts:
            with open(flood_out, "w") as out:
                flood = subprocess.Popen(
                    [compare.LOADGEN, "flood", "--master", f"127.0.0.1:{m.pb_port}",
                     "--name", "victim", "--password", "wrong-password",
                     "--attempts", str(attempts), "--concurrency", str(concurrency)],
                    stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                )
        busy.wait(timeout=seconds + 600)
        cpu = compare.cpu_seconds(m.pid) - c0
        if flood:
            flood.wait(timeout=600)
    finally:
        m.stop()
    r = compare.last_json(busy_out) or {}
    f = compare.last_json(flood_out) if attempts else None
    return {"latency_ms": r.get("latency_ms"), "builds": r.get("builds_completed"),
            "errors": r.get("errors"), "master_cpu_s": cpu, "flood": f}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--pause", type=float, default=1.0)
    ap.add_argument("--attempts", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        quiet = run(os.path.join(work, "quiet"), args.workers, args.seconds, args.pause, 0, 0)
        flooded = run(os.path.join(work, "flood"), args.workers, args.seconds, args.pause,
                      args.attempts, args.concurrency)
    print(json.dumps({"quiet": quiet, "flooded": flooded}), file=sys.stderr)
    fl = flooded["flood"] or {}
    print(f"| {args.workers} simulated workers, {args.pause} s pauses | quiet | "
          f"{args.attempts} wrong passwords from one address |")
    print("|---|---:|---:|")
    for q in ("p50", "p99", "max"):
        a = (quiet["latency_ms"] or {}).get(q)
        b = (flooded["latency_ms"] or {}).get(q)
        print(f"| request -> first command, {q}, ms | {a:.1f} | {b:.1f} |")
    print(f"| builds | {quiet['builds']} | {flooded['builds']} |")
    print(f"| master CPU s over the run | {quiet['master_cpu_s']:.2f} | "
          f"{flooded['master_cpu_s']:.2f} |")
    print(f"| flood: logins sent / failed to send / seconds / per second | | "
          f"{fl.get('sent')} / {fl.get('errors')} / {fl.get('elapsed_s')} / {fl.get('per_s')} |")


if __name__ == "__main__":
    main()
