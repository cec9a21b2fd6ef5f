#!/usr/bin/env bash
# pbfuzz against pbmaster (release build), a plain Twisted PB service and the buildbot
# 4.3.0 master, one after the other; prints Markdown: outcomes and cases per second per
# target, where they differ, and the minimized reproducers (BENCHMARKS.md, "pbfuzz").
# Loopback only.
# Usage: bench/pbfuzz.sh [--targets pbmaster,twisted,buildbot] [--seed N] [--random N]
#        [--replay-cases N] [--reply-timeout S] [--budget S] [--minimize-time S]
#        [--out-dir DIR]
# Takes about 10-20 minutes with the defaults (most of it stalls and their minimizing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-peers.sh buildbot-master twisted-py3 >&2
cargo build --release -p pbmaster -p pbfuzz --bins >&2
python3 bench/pbfuzz.py "$@"
