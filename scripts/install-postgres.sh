#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 server for the store's tests, which run throwaway
# clusters with its initdb and pg_ctl (scripts/postgres-cluster.sh). Skipped when
# they are there. The package's own cluster is not started: nothing listens after.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
  exit 0
fi
echo "installing postgresql-15" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
policy=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$policy" ]; then
  # Tells the package scripts not to start services while it is here.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  created=1
fi
trap '[ -z "$created" ] || $sudo rm -f "$policy"' EXIT
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
