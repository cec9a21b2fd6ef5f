#!/usr/bin/env bash
# The master's memory while readers follow a live log of a step printing 100 MB:
# RSS before, the highest during, and after, with FOLLOWERS readers of the pushed log
# (`curl` on the live endpoint, reading as fast as they can) and, with CHROMIUM=1, one
# headless chromium following the build page.
#   bench/live-log-memory.sh [PBMASTER_BINARY] [FOLLOWERS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$here/target/release/pbmaster}"
followers="${2:-1}"
size="${SIZE:-100000000}"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pb=$(free); http=$(free)
cat > "$work/master.toml" <<TOML
[master]
pb_listen = "127.0.0.1:$pb"
http_listen = "127.0.0.1:$http"
data_dir = "data"

[[api_token]]
name = "bench"
roles = ["admin"]
token_file = "api.token"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "big"
workers = ["w1"]
[[builder.step]]
name = "prints"
command = "yes 'a line of a long log, \\\\033[31mred\\\\033[0m and plain' | head -c $size"
TOML
token=bench-token-0123456789abcdef
(umask 077; echo "$token" > "$work/api.token")
"$bin" start --config "$work/master.toml" 2>"$work/master.log" &
master=$!; pids+=("$master")
api="http://127.0.0.1:$http"
until curl -sf "$api/healthz" >/dev/null; do sleep 0.1; done
venv="$here/.peers/buildbot-worker-4"
"$venv/bin/buildbot-worker" create-worker -q "$work/worker" "127.0.0.1:$pb" w1 pass
"$venv/bin/twistd" --nodaemon --no_save -l "$work/worker.log" --pidfile= -d "$work/worker" -y "$work/worker/buildbot.tac" &
pids+=("$!")
until curl -sf "$api/api/workers" | grep -q '"attached"'; do sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$master/status"; }
echo "before: $(rss) KiB"
curl -sf -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $token" \
    "$api/api/builders/big/force" -d '{}' >/dev/null
until curl -sf "$api/api/builds" | grep -q '"id"'; do sleep 0.05; done
build=$(curl -sf "$api/api/builds" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
readers=()
for i in $(seq 1 "$followers"); do
    curl -sN "$api/api/builds/$build/steps/1/logs/stdio/live" | wc -c > "$work/follower.$i" &
    pids+=("$!"); readers+=("$!")
done
if [ "${CHROMIUM:-0}" = 1 ]; then
    chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --user-data-dir="$work/profile" "$api/builds/$build" >/dev/null 2>&1 &
    pids+=("$!")
fi
peak=0
while curl -sf "$api/api/builds/$build" | grep -q '"finished_at":null'; do
    r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.2
done
echo "during (highest): $peak KiB"
# The readers end with the stream's `end` event; the master's memory is read meanwhile.
for p in "${readers[@]}"; do
    while kill -0 "$p" 2>/dev/null; do
        r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.2
    done
done
echo "highest until every reader had the whole log: $peak KiB"
for i in $(seq 1 "$followers"); do echo "reader $i received $(cat "$work/follower.$i") bytes of events"; done
sleep 1
echo "after: $(rss) KiB"
echo "log bytes: $(curl -sf "$api/api/builds/$build/steps/1/logs/stdio" | wc -c)"
