#!/usr/bin/env bash
# Installs what berth and its tests need on Debian 12, as root, and is safe to run again:
#   - the Debian packages (runc, nftables, skopeo, podman, buildah, docker-registry, ...)
#   - a virtual environment in .venv with berth installed editable, with its test extra.
# Usage: bash deploy/setup.sh        (from anywhere; paths are relative to the checkout)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

packages=(
  git ca-certificates python3 python3-venv python3-dev
  runc crun busybox-static iproute2 nftables uidmap
  skopeo docker-registry umoci podman buildah
  postgresql apache2-utils procps docker.io chromium debootstrap
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages and berth manages namespaces)" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps package scripts from starting services (postgresql, docker-registry)
  # that berth does not use: its tests start their own servers on loopback.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$created_policy" -eq 0 ] || rm -f "$policy"
else
  echo "setup: Debian packages already installed"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: creating .venv with $($python --version)"
  rm -rf .venv
  "$python" -m venv .venv
fi
stamp=.venv/.berth-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing berth (editable) and its test extra into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
else
  echo "setup: .venv is up to date"
fi
# bytecode ahead of time, as an installed package has it: every berth command starts
# faster, also where PYTHONDONTWRITEBYTECODE keeps Python from caching it on first use
.venv/bin/python -m compileall -q -j 0 pipeline runners >/dev/null
echo "setup: done. The berth command is .venv/bin/berth"
