#!/usr/bin/env bash
# The main job on a fresh machine: builds pbmaster, installs a real buildbot-worker 4.3.0
# in a venv, starts the master with examples/quickstart.toml and the worker beside it,
# forces the example build and prints its log. Then it keeps serving until Ctrl-C
# (with --once it stops after the build, exiting with the build's status).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
once=false
[ "${1:-}" = "--once" ] && once=true

scripts/install-peers.sh buildbot-worker-4
cargo build --release --quiet
pbmaster="$root/target/release/pbmaster"
work="$root/target/quickstart"
rm -rf "$work" && mkdir -p "$work"
cp examples/quickstart.toml "$work/master.toml"
export PBMASTER_API=http://127.0.0.1:8010

"$pbmaster" check --config "$work/master.toml"
"$pbmaster" start --config "$work/master.toml" 2> "$work/master.log" &
master=$!
worker_venv="$root/.peers/buildbot-worker-4"
"$worker_venv/bin/buildbot-worker" create-worker --keepalive=60 "$work/worker" 127.0.0.1:9989 example-worker example-pass >/dev/null
(cd "$work/worker" && exec "$worker_venv/bin/twistd" --nodaemon --no_save --pidfile= -y buildbot.tac > twistd.out 2>&1) &
worker=$!
cleanup() {
  kill "$worker" 2>/dev/null || true
  kill "$master" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 300); do
  "$pbmaster" workers 2>/dev/null | grep -q "example-worker *attached" && break
  sleep 0.2
done
"$pbmaster" workers
status=0
"$pbmaster" force hello --wait || status=$?
build=$("$pbmaster" builds --limit 1 | awk 'NR == 2 { print $1 }')
for step in 1 2; do
  echo "--- build $build, step $step ---"
  "$pbmaster" log "$build" "$step"
done
if $once; then
  exit "$status"
fi
echo
echo "master: $PBMASTER_API (log: $work/master.log); try: $pbmaster force hello --wait"
echo "Ctrl-C stops the master and the worker."
wait "$master"
