#!/usr/bin/env bash
# The main job on a fresh machine: builds pbmaster, installs a real buildbot-worker 4.3.0
# in a venv, and starts the master with examples/quickstart.toml. Forcing the example
# build makes the master start a worker on demand (a latent instance, local driver),
# run the build on it and stop it once idle. Then the master keeps serving until
# Ctrl-C; with --once it stops after the instance has stopped, exiting with the
# build's status.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
once=false
[ "${1:-}" = "--once" ] && once=true

scripts/install-peers.sh buildbot-worker-4
cargo build --release --quiet
# Where cargo put it (CARGO_TARGET_DIR or a cargo config may move it from target/).
target=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
pbmaster="${target:-$root/target}/release/pbmaster"
mkdir -p "$root/target"
rm -rf "$root/target/quickstart"
export PBMASTER_API=http://127.0.0.1:8010
# The API token examples/quickstart.toml names (forcing a build needs one), readable
# by this user only; the pbmaster commands below read it from PBMASTER_TOKEN_FILE.
export PBMASTER_TOKEN_FILE="$root/target/quickstart.token"
rm -f "$PBMASTER_TOKEN_FILE"
(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$PBMASTER_TOKEN_FILE")

"$pbmaster" check --config examples/quickstart.toml
# The master reads the file itself; the variable stays out of its environment, which
# the workers it starts inherit (and print in each step's log header).
env -u PBMASTER_TOKEN_FILE "$pbmaster" start --config examples/quickstart.toml \
  2> "$root/target/quickstart.log" &
master=$!
trap 'kill "$master" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
until "$pbmaster" workers >/dev/null 2>&1; do sleep 0.2; done

status=0
"$pbmaster" force hello --wait || status=$?
build=$("$pbmaster" builds --limit 1 | awk 'NR == 2 { print $1 }')
for step in 1 2; do
  echo "--- build $build, step $step ---"
  "$pbmaster" log "$build" "$step"
done
echo "--- latent instances ---"
"$pbmaster" instances
if $once; then
  # The instance table follows its header line; pool lines come before it.
  until "$pbmaster" instances | awk '/^instance / { table = 1; next }
      table && $3 != "stopped" && $3 != "failed" { busy = 1 } END { exit busy }'; do
    sleep 1
  done
  "$pbmaster" instances
  exit "$status"
fi
echo
echo "master: $PBMASTER_API (log: target/quickstart.log)"
echo "try: PBMASTER_TOKEN_FILE=$PBMASTER_TOKEN_FILE $pbmaster force hello --wait"
echo "Ctrl-C stops the master (and any instance still running)."
wait "$master"
