#!/usr/bin/env bash
# A first look at the master's speed with a real buildbot-worker 4.3.0 on loopback:
# 50 consecutive trivial builds (each forced and waited for, one after another), and
# one step printing 100 MB to stdout (MB/s through the master, and the master's CPU
# seconds from /proc).  Usage: bench/master-builds.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-peers.sh buildbot-worker-4 >&2
cargo build --release --quiet
pbmaster="$root/target/release/pbmaster"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
pb=$((20000 + RANDOM % 20000)); http=$((pb + 1))
# The API token: the master reads it (token_env), and so does the CLI.
PBMASTER_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export PBMASTER_TOKEN
cat > "$work/master.toml" <<TOML
[master]
pb_listen = "127.0.0.1:$pb"
http_listen = "127.0.0.1:$http"
data_dir = "data"

[[api_token]]
name = "bench"
roles = ["admin"]
token_env = "PBMASTER_TOKEN"

[[worker]]
name = "bench"
password = "bench"

[[builder]]
name = "trivial"
workers = ["bench"]
[[builder.step]]
command = "true"

[[builder]]
name = "stdout100"
workers = ["bench"]
[[builder.step]]
command = "yes 'the quick brown fox jumps over the lazy dog; the quick brown fox jumps over it' | head -c 100000000"
TOML
export PBMASTER_API="http://127.0.0.1:$http"
RUST_LOG=warn "$pbmaster" start --config "$work/master.toml" 2> "$work/master.log" &
master=$!
venv="$root/.peers/buildbot-worker-4"
"$venv/bin/buildbot-worker" create-worker "$work/worker" "127.0.0.1:$pb" bench bench >/dev/null
(cd "$work/worker" && exec "$venv/bin/twistd" --nodaemon --no_save --pidfile= -y buildbot.tac >/dev/null 2>&1) &
until "$pbmaster" workers 2>/dev/null | grep -q "bench *attached"; do sleep 0.1; done

cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$master/stat"; }
now() { date +%s.%N; }

"$pbmaster" force trivial --wait >/dev/null   # warm-up
t0=$(now); c0=$(cpu)
for _ in $(seq 50); do "$pbmaster" force trivial --wait >/dev/null; done
t1=$(now); c1=$(cpu)
python3 -c "w=$t1-$t0; print(f'50 consecutive trivial builds: {w:.2f} s wall, {w/50*1000:.0f} ms per build, {50/w:.1f} builds/s, master CPU {($c1-$c0):.2f} s')"

t0=$(now); c0=$(cpu)
"$pbmaster" force stdout100 --wait >/dev/null
t1=$(now); c1=$(cpu)
build=$("$pbmaster" builds --builder stdout100 --limit 1 | awk 'NR == 2 { print $1 }')
bytes=$(curl -s "$PBMASTER_API/api/builds/$build/steps/1/logs/stdio?channel=stdout" | wc -c)
python3 -c "w=$t1-$t0; print(f'100 MB of stdout: {$bytes} bytes stored, {w:.2f} s wall, {$bytes/w/1e6:.1f} MB/s, master CPU {($c1-$c0):.2f} s ({($c1-$c0)/($bytes/1e6)*1000:.1f} ms per MB)')"
echo "master RSS at the end: $(awk '/VmRSS/ { print $2, $3 }' /proc/$master/status)"
