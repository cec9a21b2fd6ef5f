#!/usr/bin/env bash
# Latent substantiation with the local driver: see bench/latent.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-peers.sh buildbot-worker-4 >&2
cargo build --release --quiet
python3 bench/latent.py "$root/target/release/pbmaster" "$root/.peers/buildbot-worker-4"
