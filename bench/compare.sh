#!/usr/bin/env bash
# pbmaster (release build) against the buildbot 4.3.0 master (SQLite, no web UI) on
# this machine, same workers, same work, in one run; prints Markdown tables with the
# ratios (BENCHMARKS.md is made from them). Loopback only.
# Usage: bench/compare.sh [--runs N] [--only a,c,d,m] [--masters pbmaster,buildbot]
#        [--real-workers N] [--simulated 1000,10000] [--busy-workers N]
#        [--busy-seconds S] [--busy-pause S] [--mutate-budget S] [--out results.json]
#        [--no-codec]
# Takes about 20-30 minutes with the defaults (most of it the Python master).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
codec=1
args=()
for a in "$@"; do
  if [ "$a" = --no-codec ]; then codec=0; else args+=("$a"); fi
done
scripts/install-peers.sh buildbot-master buildbot-worker-4 >&2
# The master and the load generator (workspace member loadgen/).
cargo build --release --workspace --bins >&2
# 10,000 connections on each side: raise the soft limit as far as the hard one allows
# (the load generator raises its own; this covers both masters).
ulimit -n "$(ulimit -Hn)"
echo "## Machine"
echo
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "- memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "- kernel: $(uname -r); open files: $(ulimit -n)"
echo "- pbmaster: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (release build)"
echo "- $(python3 scripts/link-order.py --check)"
echo "- buildbot master: $(.peers/buildbot-master/bin/python -c 'import buildbot, twisted; print(buildbot.version, "on Twisted", twisted.__version__)')"
echo "- buildbot-worker: $(.peers/buildbot-worker-4/bin/python -c 'import buildbot_worker, twisted; print(buildbot_worker.version, "on Twisted", twisted.__version__)')"
echo
python3 bench/compare.py ${args[@]+"${args[@]}"}
if [ "$codec" = 1 ]; then
  echo "### e. Codec throughput (bench/codec-vs-twisted.sh)"
  echo
  bench/codec-vs-twisted.sh
fi
