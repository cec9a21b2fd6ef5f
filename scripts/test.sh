#!/usr/bin/env bash
# Runs every test on a fresh machine, installing what the tests need first:
#   1. the real Twisted peers (Python 3 and Python 2) in venvs under .peers/;
#   2. cargo test for the whole workspace, all features (unit, property, fixture and
#      CLI tests, including the recorded buildbot sessions);
#   3. the deterministic fixture vectors regenerated with real Twisted and compared
#      with the committed ones;
#   4. every fuzz target for FUZZ_SECONDS (default 20) each.
# Usage: scripts/test.sh            (FUZZ_SECONDS=0 skips fuzzing)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fuzz_seconds=${FUZZ_SECONDS:-20}

step() { printf '\n== %s\n' "$*"; }

step "installing peers"
scripts/install-peers.sh twisted-py3 twisted-py2

step "cargo test"
cargo test --workspace --all-features --locked

step "regenerating fixture vectors with real Twisted"
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
fixtures/gen/generate-vectors.sh "$fresh" >/dev/null
if ! diff -r "$fresh" fixtures/vectors >/dev/null; then
  diff -r "$fresh" fixtures/vectors | head -40
  echo "fixture vectors differ from what Twisted produces now" >&2
  exit 1
fi
echo "vectors match: $(find fixtures/vectors -name '*.json' | wc -l) files"

if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzzing each target for ${fuzz_seconds}s"
  fuzz/run.sh "$fuzz_seconds"
fi
echo
echo "all tests passed"
