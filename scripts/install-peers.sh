#!/usr/bin/env bash
# Installs the real Python peers the tests talk to, each in its own venv under .peers/.
# Usage: scripts/install-peers.sh NAME...   (NAME = a file scripts/peers/NAME.sh)
# Each recipe is idempotent: it writes .peers/NAME/.done with its recipe hash when it
# succeeds, and skips the work when that stamp matches.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers="$root/.peers"
mkdir -p "$peers"
export PYENV_ROOT="${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}"
# pyenv_python VERSION: path of a pyenv interpreter (x.y or x.y.z prefix match).
pyenv_python() {
  local v
  v=$(ls "$PYENV_ROOT/versions" | grep -E "^$1(\.|$)" | sort -V | tail -n1)
  [ -n "$v" ] || { echo "pyenv Python $1 is missing" >&2; return 1; }
  echo "$PYENV_ROOT/versions/$v/bin/python"
}
for name in "$@"; do
  recipe="$root/scripts/peers/$name.sh"
  [ -f "$recipe" ] || { echo "no recipe $recipe" >&2; exit 2; }
  stamp="$peers/$name/.done"
  want=$(sha256sum "$recipe" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then continue; fi
  echo "installing peer $name" >&2
  rm -rf "${peers:?}/$name"
  # shellcheck source=/dev/null
  ( dest="$peers/$name"; source "$recipe" )
  echo "$want" > "$stamp"
done
