#!/usr/bin/env bash
# Builds the stock image the docker driver's tests boot: a minimal Debian root file
# system of the host's release with python3, python3-venv and cloud-init, and nothing
# of buildbot (instances install buildbot-worker at boot, from their cloud-init user
# data). Also downloads the wheels of buildbot-worker 4.3.0 and its dependencies
# (the pins of scripts/peers/buildbot-worker-4.sh), which the tests mount read-only
# into the containers so that pip installs from them without reaching the index.
#
# Writes .peers/stock-image/rootfs.tar (for `docker import`) and
# .peers/stock-image/wheels/; idempotent: .peers/stock-image/.done holds this
# script's hash, and a matching stamp skips the work.
# Usage: scripts/install-stock-image.sh [--import]
#   --import   also `docker import` the tarball as pbmaster-stock:RELEASE into the
#              daemon DOCKER_HOST names (default: the usual unix socket)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.peers/stock-image"
# shellcheck source=/dev/null
release=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
want=$(sha256sum "$0" | cut -d' ' -f1)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -f "$dest/.done" ] || [ "$(cat "$dest/.done")" != "$want" ]; then
  echo "building the stock $release image" >&2
  start=$(date +%s)
  $sudo rm -rf "$dest"
  mkdir -p "$dest"
  fs="$dest/rootfs"
  $sudo debootstrap --variant=minbase \
    --include=python3,python3-venv,cloud-init,ca-certificates,python3-cffi-backend \
    "$release" "$fs" "$mirror" >"$dest/debootstrap.log" 2>&1 ||
    { tail -n 30 "$dest/debootstrap.log" >&2; exit 1; }
  # (python3-cffi-backend is named because debootstrap does not resolve the virtual
  # package python3-cryptography needs.)
  # What a cloud image has beyond minbase: nothing of ours. Caches are dropped to
  # keep the image small.
  $sudo rm -rf "$fs"/var/cache/apt/archives/*.deb "$fs"/var/lib/apt/lists/*
  $sudo tar -C "$fs" --numeric-owner -cf "$dest/rootfs.tar.part" .
  $sudo mv "$dest/rootfs.tar.part" "$dest/rootfs.tar"
  $sudo rm -rf "$fs"
  # The same pins as the buildbot-worker-4 peer; wheels for the image's CPython.
  py=python3
  if command -v pyenv >/dev/null 2>&1; then
    py=$(ls -d "$(pyenv root)"/versions/3.11* 2>/dev/null | sort -V | tail -n1)/bin/python
  fi
  "$py" -m pip download -q --no-deps --only-binary=:all: -d "$dest/wheels" \
    buildbot-worker==4.3.0 Twisted==26.10.0 \
    attrs==26.1.0 autobahn==26.10.2 Automat==25.4.16 cbor2==6.3.0 cffi==2.1.1 \
    constantly==23.10.4 cryptography==50.0.2 hyperlink==21.0.0 idna==3.20 \
    Incremental==24.11.0 msgpack==1.2.4 packaging==26.4 pycparser==3.12 txaio==26.6.1 \
    typing_extensions==4.16.0 ujson==6.1.0 zope.interface==8.7
  echo "$release" >"$dest/release"
  echo "$want" >"$dest/.done"
  echo "stock image built in $(($(date +%s) - start)) s: $(du -sh "$dest/rootfs.tar" | cut -f1)" >&2
fi

if [ "${1:-}" = "--import" ]; then
  docker import --change 'CMD ["/bin/sh"]' "$dest/rootfs.tar" "pbmaster-stock:$release"
fi
