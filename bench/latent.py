"""Latent workers with the local driver, measured: the master-side time from an
instance's worker logging in to the build's first command, and the wall time to
substantiate 10 instances at once versus one after another.

Usage: python3 bench/latent.py PBMASTER VENV   (bench/latent.sh passes both)
"""
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The master's API token (token_env in its config); writes need it.
TOKEN = os.environ.setdefault("PBMASTER_TOKEN", secrets.token_hex(16))


def api(base, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    req = urllib.request.Request(base + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def run(pbmaster, venv, max_instances, builds):
    """Forces `builds` requests at once on a pool capped at `max_instances`; returns the
    wall time until all are done and the login-to-first-command times."""
    work = tempfile.mkdtemp(prefix="pbmaster-latent-bench-")
    pb, http = free_port(), free_port()
    with open(os.path.join(work, "master.toml"), "w") as f:
        f.write(f"""
[master]
pb_listen = "127.0.0.1:{pb}"
http_listen = "127.0.0.1:{http}"
data_dir = "data"

[[api_token]]
name = "bench"
roles = ["admin"]
token_env = "PBMASTER_TOKEN"

[[latent_pool]]
name = "bench"
driver = "local"
venv = "{venv}"
max_instances = {max_instances}
build_wait_timeout = 0
poll_interval = 1

[[builder]]
name = "trivial"
workers = ["bench"]
[[builder.step]]
command = "true"
""")
    env = dict(os.environ, RUST_LOG="warn")
    master = subprocess.Popen([pbmaster, "start", "--config", os.path.join(work, "master.toml")],
                              stderr=open(os.path.join(work, "master.log"), "w"), env=env)
    base = f"http://127.0.0.1:{http}"
    try:
        for _ in range(300):
            try:
                api(base, "/api/builders")
                break
            except OSError:
                time.sleep(0.1)
        t0 = time.monotonic()
        ids = [api(base, "/api/builders/trivial/force", {})["request_id"] for _ in range(builds)]
        while True:
            done = [api(base, f"/api/buildrequests/{i}") for i in ids]
            if all(r["complete"] for r in done):
                break
            time.sleep(0.05)
        wall = time.monotonic() - t0
        assert all(r["result"] == "success" for r in done), done
        instances = {i["name"]: i for i in api(base, "/api/latent?limit=1000")}
        overheads = []
        for r in done:
            build = api(base, f"/api/builds/{r['builds'][-1]['id']}")
            inst = instances[build["worker"]]
            login = next(at for phase, at, _ in inst["transitions"] if phase == "attaching")
            first_command = build["steps"][0]["started_at"]
            overheads.append((first_command - login) * 1000)
        return wall, overheads, len(instances)
    finally:
        master.terminate()
        master.wait(timeout=60)


def main():
    pbmaster, venv = sys.argv[1], sys.argv[2]
    at_once, over1, n1 = run(pbmaster, venv, 10, 10)
    one_by_one, over2, n2 = run(pbmaster, venv, 1, 10)
    over = over1 + over2
    print(f"10 instances at once (max_instances 10): {at_once:.2f} s wall, {n1} instances")
    print(f"10 instances one after another (max_instances 1): {one_by_one:.2f} s wall, {n2} instances")
    print(f"ratio: {one_by_one / at_once:.1f}x")
    print(f"worker login -> first command (master side, {len(over)} builds): "
          f"median {statistics.median(over):.1f} ms, max {max(over):.1f} ms")


if __name__ == "__main__":
    main()
