"""A minimal base image from the host's static busybox, made deterministically.

One layer: ``bin/busybox``, a symlink per applet it lists, ``etc/passwd``,
``etc/group``, ``tmp`` (1777) and ``root``; every mtime is the given epoch and every
owner root, so the same busybox binary always gives the same digest.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.build.cache import BuildCache
from pipeline.build.errors import BuildError
from pipeline.build.imagestate import ImageState, config_document
from runners.oci import mediatypes
from runners.oci.layer import EntryKind, LayerEntry, write_layer
from runners.oci.manifest import Descriptor, ImageManifest, build_manifest

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"  # noqa: S105 -- an account list, not a secret
GROUP = "root:x:0:\nnogroup:x:65534:\n"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def busybox_applets(busybox: Path) -> list[str]:
    """The applets ``busybox --list`` names (sorted)."""
    result = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(
            f"{busybox} --list exited with {result.returncode}: {result.stderr.strip()}"
            " (install busybox-static)"
        )
    return sorted(
        {line.strip() for line in result.stdout.splitlines() if line.strip()} - {"busybox"}
    )


def busybox_entries(busybox: Path, applets: list[str], epoch: int) -> list[LayerEntry]:
    """The sorted entries of the base layer."""
    size = busybox.stat().st_size
    entries = [
        LayerEntry("bin", EntryKind.DIR, mode=0o755, mtime=epoch),
        LayerEntry(
            "bin/busybox", EntryKind.FILE, mode=0o755, mtime=epoch, size=size, source=busybox
        ),
        LayerEntry("etc", EntryKind.DIR, mode=0o755, mtime=epoch),
        LayerEntry(
            "etc/group",
            EntryKind.FILE,
            mode=0o644,
            mtime=epoch,
            data=GROUP.encode(),
            size=len(GROUP),
        ),
        LayerEntry(
            "etc/passwd",
            EntryKind.FILE,
            mode=0o644,
            mtime=epoch,
            data=PASSWD.encode(),
            size=len(PASSWD),
        ),
        LayerEntry("root", EntryKind.DIR, mode=0o700, mtime=epoch),
        LayerEntry("tmp", EntryKind.DIR, mode=0o1777, mtime=epoch),
    ]
    entries += [
        LayerEntry(f"bin/{name}", EntryKind.SYMLINK, mode=0o777, mtime=epoch, linkname="busybox")
        for name in applets
        if "/" not in name
    ]
    return sorted(entries, key=lambda e: e.name)


def make_busybox_image(
    cache: BuildCache, busybox: Path, tag: str | None, epoch: int = 0
) -> ImageManifest:
    """Write the busybox base image into the cache's image store (tagged ``tag``)."""
    if not busybox.is_file():
        raise BuildError(f"{busybox}: no such file; install busybox-static or pass --busybox")
    entries = busybox_entries(busybox, busybox_applets(busybox), epoch)
    with cache.new_blob() as (path, keep), path.open("wb") as out:
        layer = write_layer(entries, out)
        keep.append(layer.digest)
    from datetime import UTC, datetime

    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = ImageState(env=(("PATH", _PATH),), cmd=("sh",))
    state = state.with_layer(layer.diff_id, "berth image base busybox", created)
    config = config_document(state, created)
    config_digest = cache.images.write_blob(config)
    manifest = build_manifest(
        Descriptor(mediatypes.OCI_CONFIG, config_digest, len(config)),
        [Descriptor(mediatypes.OCI_LAYER_GZIP, layer.digest, layer.size)],
    )
    cache.images.write_blob(manifest.raw)
    cache.images.add_manifest(manifest.descriptor, tag)
    return manifest
