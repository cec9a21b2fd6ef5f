#!/usr/bin/env bash
# Runs every test on a fresh machine, installing what the tests need first:
#   1. the real peers in venvs under .peers/: Twisted (Python 3 and 2) and the four
#      worker generations (buildbot-worker 4.3.0, 2.10.5, 0.9.15.post1, buildbot-slave
#      0.8.14.post1), 4.3.0 again with Twisted's TLS extra for PB over TLS, the
#      buildbot 4.3.0 master package, whose `buildbot sendchange`
#      the change tests use, moto 5.2.5, the EC2-compatible API server the ec2
#      driver's tests start on loopback, and aiosmtpd 1.4.6, the SMTP server (STARTTLS,
#      AUTH) the email reporter's tests start on loopback;
#      Debian's chromium, which tests/browser.rs drives headless; and Debian's
#      docker.io and debootstrap with the stock image tests/docker.rs and
#      tests/ec2_stock.rs boot (a
#      minimal Debian with python3 and cloud-init, and buildbot-worker's wheels);
#      Debian's postgresql-15, whose initdb and pg_ctl the store's tests run throwaway
#      clusters with (scripts/postgres-cluster.sh);
#   2. cargo test for the whole workspace, all features (so the ec2 and docker drivers
#      too): unit, property, fixture and CLI tests, and the master end to end against
#      every worker generation, the EC2 emulator and a private dockerd; then a
#      representative set of the end-to-end suites again with every test master's
#      state in PostgreSQL (one throwaway cluster, stopped by its PID at the end);
#   3. the deterministic fixture vectors regenerated with real Twisted and compared
#      with the committed ones;
#   4. the README's quickstart, once;
#   5. every fuzz target for FUZZ_SECONDS (default 20) each.
# Usage: scripts/test.sh            (FUZZ_SECONDS=0 skips fuzzing)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fuzz_seconds=${FUZZ_SECONDS:-20}
fresh="" pg_dir=""
cleanup() {
  [ -z "$pg_dir" ] || scripts/postgres-cluster.sh stop "$pg_dir"
  [ -z "$fresh" ] || rm -rf "$fresh"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "installing peers"
scripts/install-peers.sh twisted-py3 twisted-py2 \
  buildbot-worker-4 buildbot-worker-4-tls buildbot-worker-2 buildbot-worker-0.9 \
  buildslave-py2 buildbot-master moto aiosmtpd

step "installing chromium"
scripts/install-browser.sh

step "installing docker and the stock image"
scripts/install-stock-image.sh

step "installing postgresql"
scripts/install-postgres.sh

step "cargo test"
cargo test --workspace --all-features --locked

step "end-to-end suites on PostgreSQL"
pg_dir=$(mktemp -d)
PBMASTER_TEST_POSTGRES=$(scripts/postgres-cluster.sh start "$pg_dir")
export PBMASTER_TEST_POSTGRES
cargo test --all-features --locked --test generations --test lifecycle --test steps \
  --test web --test changes --test retention --test reconfig --test reporters \
  --test step_kinds --test latent --test secrets --test limits --test api_auth \
  --test observe --test inject --test git_poller
unset PBMASTER_TEST_POSTGRES
scripts/postgres-cluster.sh stop "$pg_dir"
pg_dir=""

step "regenerating fixture vectors with real Twisted"
fresh=$(mktemp -d)
fixtures/gen/generate-vectors.sh "$fresh" >/dev/null
if ! diff -r "$fresh" fixtures/vectors >/dev/null; then
  diff -r "$fresh" fixtures/vectors | head -40
  echo "fixture vectors differ from what Twisted produces now" >&2
  exit 1
fi
echo "vectors match: $(find fixtures/vectors -name '*.json' | wc -l) files"

step "quickstart (the README's run command)"
scripts/quickstart.sh --once >/dev/null

if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzzing each target for ${fuzz_seconds}s"
  fuzz/run.sh "$fuzz_seconds"
fi
echo
echo "all tests passed"
