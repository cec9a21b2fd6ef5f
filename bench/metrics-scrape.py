#!/usr/bin/env python3
"""Cost of one /metrics scrape with N simulated workers attached (default 1,000).

Starts target/release/pbmaster with N workers configured, attaches them with
target/release/pbmaster-loadgen, then scrapes /metrics SCRAPES times in a row and
prints the wall time per scrape (median, p95), the master's CPU per scrape and the
answer's size. Build first: cargo build --release -p pbmaster -p pbmaster-loadgen.
Usage: bench/metrics-scrape.py [N] [SCRAPES]"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
MASTER = os.path.join(TARGET, "release", "pbmaster")
LOADGEN = os.path.join(TARGET, "release", "pbmaster-loadgen")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    scrapes = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    work = tempfile.mkdtemp(prefix="pbmaster-metrics-")
    pb, http = free_port(), free_port()
    lines = ["[master]", f'pb_listen = "127.0.0.1:{pb}"', f'http_listen = "127.0.0.1:{http}"',
             'data_dir = "data"', f"max_connections = {n + 100}", ""]
    for i in range(n):
        lines += ["[[worker]]", f'name = "sim-{i}"', 'password = "bench"', ""]
    with open(os.path.join(work, "master.toml"), "w") as f:
        f.write("\n".join(lines))
    log = open(os.path.join(work, "master.log"), "w")
    master = subprocess.Popen([MASTER, "start", "--config", os.path.join(work, "master.toml")],
                              stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    gen = None
    try:
        api = f"http://127.0.0.1:{http}"
        deadline = time.time() + 30
        while True:
            try:
                get(api + "/healthz")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        gen = subprocess.Popen([LOADGEN, "workers", "--master", f"127.0.0.1:{pb}", "-n", str(n),
                                "--prefix", "sim", "--password", "bench", "--hold", "600"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while True:
            text = get(api + "/metrics").decode()
            attached = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                           if l.startswith("pbmaster_workers_attached{"))
            if attached >= n:
                break
            if time.time() > deadline:
                raise SystemExit(f"only {attached} of {n} attached")
            time.sleep(0.5)
        time.sleep(2)
        walls, size = [], 0
        c0 = cpu_seconds(master.pid)
        for _ in range(scrapes):
            t0 = time.perf_counter()
            size = len(get(api + "/metrics"))
            walls.append(time.perf_counter() - t0)
        cpu = (cpu_seconds(master.pid) - c0) / scrapes
        walls.sort()
        print(f"{n} workers attached; {scrapes} scrapes of {size} bytes: "
              f"median {walls[len(walls) // 2] * 1000:.2f} ms, "
              f"p95 {walls[int(len(walls) * 0.95)] * 1000:.2f} ms, "
              f"master CPU {cpu * 1000:.2f} ms per scrape")
    finally:
        if gen:
            gen.send_signal(signal.SIGTERM)
            gen.wait(60)
        master.send_signal(signal.SIGTERM)
        master.wait(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
