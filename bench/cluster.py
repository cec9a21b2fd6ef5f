#!/usr/bin/env python3
"""Several pbmaster masters over one PostgreSQL 15 server, against one master on
SQLite, in one run: 200 simulated workers (pbmaster-loadgen) split evenly over the
masters, each forcing builds of its own builder through its master's API back to
back (or with --pause between builds) for --seconds; reported: builds per second in
all, request -> first command latency, and the masters' CPU per build.

Needs the release builds (cargo build --release -p pbmaster -p pbmaster-loadgen) and
PostgreSQL 15 (scripts/install-postgres.sh); the server is a throwaway cluster
(scripts/postgres-cluster.sh), stopped by its PID at the end. Standard library only.
Usage: python3 bench/cluster.py [--masters 1,2,3] [--workers 200] [--seconds 30]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402

SCRIPT = os.path.join(C.ROOT, "scripts", "postgres-cluster.sh")


def psql(admin_url, sql):
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   stdout=subprocess.DEVNULL)


def store_extra(admin_url, db, folder):
    """The [store] section of a master in `folder` on database `db`."""
    rest = admin_url[len("postgres://"):]
    login, host = rest.split("@", 1)
    user, password = login.split(":", 1)
    host = host.split("/", 1)[0]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "db.password")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return f'[store]\nurl = "postgres://{user}@{host}/{db}"\npassword_file = "{path}"\n'


def server_cpu(pg_dir):
    """CPU seconds of the PostgreSQL server: the postmaster and the sessions it has
    reaped (utime, stime, cutime, cstime)."""
    if not pg_dir:
        return 0.0
    with open(os.path.join(pg_dir, "pid")) as f:
        pid = f.read().strip()
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in rest[11:15]) / C.CLK_TCK


def run(work, n_masters, admin_url, workers, seconds, pause, pg_dir=None):
    """`n_masters` masters (on PostgreSQL if `admin_url`, else one on SQLite)."""
    label = f"{n_masters} on PostgreSQL" if admin_url else "1 on SQLite"
    db = f"bench_{n_masters}"
    if admin_url:
        psql(admin_url, f"CREATE DATABASE {db}")
    names = [f"sim-{i}" for i in range(workers)]
    spec = C.Spec(names, [(f"b-{i}", [f"sim-{i}"], "true") for i in range(workers)])
    masters = []
    try:
        for k in range(n_masters):
            folder = os.path.join(work, f"{db}-m{k}")
            extra = ""
            if admin_url:
                extra = store_extra(admin_url, db, folder)
                extra += f'[cluster]\nname = "m{k}"\n'
            C.PBMASTER_EXTRA = extra
            masters.append(C.PbMaster(folder, spec))
        share = workers // n_masters
        c0 = [C.cpu_seconds(m.pid) for m in masters]
        db0 = server_cpu(pg_dir)
        gens = []
        for k, m in enumerate(masters):
            count = share if k < n_masters - 1 else workers - share * (n_masters - 1)
            out = open(os.path.join(work, f"{db}-gen{k}.out"), "w")
            gens.append((out, subprocess.Popen(
                [C.LOADGEN, "workers", "--master", f"127.0.0.1:{m.pb_port}", "-n", str(count),
                 "--first", str(share * k), "--prefix", "sim", "--password", C.PASSWORD,
                 "--force-url", m.force_url(), "--duration", str(seconds), "--hold", "2",
                 "--pause", str(pause)],
                stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)))
        for out, p in gens:
            p.wait(timeout=seconds + 900)
            out.close()
        cpu = sum(C.cpu_seconds(m.pid) - c for m, c in zip(masters, c0))
    finally:
        for m in masters:
            m.stop()
    # The masters' sessions have ended: their CPU is the server's children's now.
    db_cpu = server_cpu(pg_dir) - db0 if admin_url else 0.0
    results = [C.last_json(out.name) or {} for out, _ in gens]
    builds = sum(r.get("builds_completed") or 0 for r in results)
    elapsed = max((r.get("elapsed_s") or seconds) for r in results)
    p99 = max(((r.get("latency_ms") or {}).get("p99") or 0) for r in results)
    p50 = max(((r.get("latency_ms") or {}).get("p50") or 0) for r in results)
    errors = sum(r.get("errors") or 0 for r in results)
    res = {"masters": label, "builds": builds, "builds_per_s": builds / elapsed,
           "p50_ms": p50, "p99_ms": p99, "cpu_ms_per_build": cpu / max(builds, 1) * 1000,
           "db_cpu_ms_per_build": db_cpu / max(builds, 1) * 1000,
           "errors": errors}
    C.log(f"  {label}: {res}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--masters", default="1,2,3")
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--pause", type=float, default=0.0)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pbm-cluster-")
    # Its own folder in /tmp: the server runs as an unprivileged user, who cannot
    # enter the work folder.
    pg_dir = tempfile.mktemp(prefix="pbm-cluster-pg-")
    admin_url = subprocess.run([SCRIPT, "start", pg_dir], check=True, capture_output=True,
                               text=True).stdout.strip()
    rows = []
    try:
        rows.append(run(work, 1, None, args.workers, args.seconds, args.pause))
        for n in [int(x) for x in args.masters.split(",") if x]:
            rows.append(run(work, n, admin_url, args.workers, args.seconds, args.pause, pg_dir))
    finally:
        subprocess.run([SCRIPT, "stop", pg_dir])
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["builds_per_s"] or 1
    print(f"{args.workers} simulated workers, {args.seconds} s, pause {args.pause} s\n")
    print("| masters | builds/s | vs 1 on SQLite | p50 ms | p99 ms | masters' CPU ms/build |"
          " PostgreSQL CPU ms/build | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['masters']} | {r['builds_per_s']:.1f} | {r['builds_per_s'] / base:.2f}x |"
              f" {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_ms_per_build']:.2f} |"
              f" {r['db_cpu_ms_per_build']:.2f} | {r['errors']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
