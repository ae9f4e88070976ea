#!/usr/bin/env bash
# Makes the base image of berth's own image, debian:bookworm, without any image registry:
# a `debootstrap --variant=minbase` tree from Debian's package mirror, packed by umoci
# into an OCI archive. Idempotent: an archive already in ARCHIVE_DIR is kept as it is
# (delete it to make a fresh one), so a cached base means no download at all.
#
# Usage: bash deploy/base-image.sh ARCHIVE_DIR [BUILD_CACHE_DIR]
#   ARCHIVE_DIR       where debian-bookworm.oci.tar is kept (created if missing)
#   BUILD_CACHE_DIR   also import the archive as debian:bookworm into this berth build
#                     cache, where `berth build --cache-dir BUILD_CACHE_DIR` finds FROM
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), BERTH (the berth
# command; default .venv/bin/berth of this checkout). Needs root, debootstrap and umoci.
# Prints the archive's path on its last line.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: bash deploy/base-image.sh ARCHIVE_DIR [BUILD_CACHE_DIR]" >&2
  exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "base-image: run as root (debootstrap creates device nodes and chroots)" >&2
  exit 1
fi
for tool in debootstrap umoci tar; do
  command -v "$tool" >/dev/null || {
    echo "base-image: $tool is not installed; run deploy/setup.sh (or apt-get install $tool)" >&2
    exit 1
  }
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
archive_dir=$(mkdir -p "$1" && cd "$1" && pwd)
archive=$archive_dir/debian-bookworm.oci.tar
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
berth=${BERTH:-$root/.venv/bin/berth}

if [ ! -s "$archive" ]; then
  # Work in a scratch directory next to the archive and rename at the end, so an
  # interrupted run never leaves a half-written archive that a later run would trust.
  work=$(mktemp -d "$archive_dir/.base-image.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "base-image: debootstrap bookworm from $mirror (a minute or two)" >&2
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    echo "base-image: debootstrap failed (full log above); check that $mirror is reachable" >&2
    exit 1
  }
  # What only the build machine needs: downloaded packages, the package lists (a RUN
  # apt-get update fetches fresh ones) and logs. Smaller layer, same behaviour.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/var/log/* "$work"/rootfs/debootstrap
  # Device nodes have no place in a layer (berth refuses them when unpacking): the
  # runtime gives every container its own /dev.
  find "$work/rootfs/dev" -mindepth 1 -delete
  # A container's resolv.conf and hosts are bind-mounted at run time.
  : >"$work/rootfs/etc/resolv.conf"
  printf 'deb %s bookworm main\n' "$mirror" >"$work/rootfs/etc/apt/sources.list"

  echo "base-image: packing the tree into an OCI image" >&2
  layout=$work/layout
  umoci init --layout "$layout"
  umoci new --image "$layout:bookworm"
  umoci insert --image "$layout:bookworm" --history.created_by "debootstrap --variant=minbase bookworm" \
    "$work/rootfs" /
  umoci config --image "$layout:bookworm" \
    --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --config.env "LANG=C.UTF-8" \
    --config.cmd bash \
    --config.workingdir /
  umoci gc --layout "$layout"
  tar -C "$layout" -cf "$work/archive.tar" oci-layout index.json blobs
  mv "$work/archive.tar" "$archive"
  echo "base-image: wrote $archive" >&2
else
  echo "base-image: $archive exists; keeping it" >&2
fi

if [ $# -eq 2 ]; then
  "$berth" image import "$archive" -t debian:bookworm --cache-dir "$2" >&2
fi
echo "$archive"
