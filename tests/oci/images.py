"""Small OCI images for the registry-client tests, written into OCI layout directories.

Layers are deterministic tars (sorted names, zero mtimes, root owner), gzip-compressed
with a zero timestamp unless told otherwise, so the same content always has the same
digest and skopeo copies them without recompressing.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.oci import mediatypes
from runners.oci.digest import Digest
from runners.oci.layout import OCILayout
from runners.oci.manifest import (
    DEFAULT_PLATFORM,
    Descriptor,
    ImageManifest,
    Platform,
    build_index,
    build_manifest,
)


@dataclass(frozen=True)
class SampleImage:
    """An image in ``layout`` under ``tag``; ``manifest`` is what the layout holds."""

    layout: OCILayout
    tag: str
    manifest: ImageManifest

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return self.manifest.blobs()

    @property
    def location(self) -> str:
        return f"oci:{self.layout.root}:{self.tag}"


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def noise(size: int, seed: int) -> bytes:
    """Incompressible bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


def _config(diff_ids: Sequence[Digest], platform: Platform, label: str) -> bytes:
    doc = {
        "architecture": platform.architecture,
        "os": platform.os,
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["-c", "echo hi"],
            "Env": ["PATH=/usr/bin:/bin"],
            "Labels": {"test": label},
        },
        "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        "history": [{"created_by": "tests/oci/images.py"} for _ in diff_ids],
    }
    if platform.variant:
        doc["variant"] = platform.variant
    return json.dumps(doc, sort_keys=True).encode()


def write_manifest(
    layout: OCILayout,
    layers: Sequence[Mapping[str, bytes]],
    *,
    compress: bool = True,
    platform: Platform = DEFAULT_PLATFORM,
    label: str = "berth",
) -> ImageManifest:
    """Store layers, config and manifest blobs in ``layout`` (no tag yet)."""
    descriptors, diff_ids = [], []
    for files in layers:
        tar = layer_tar(files)
        diff_ids.append(Digest.of(tar))
        blob = gzip.compress(tar, compresslevel=1, mtime=0) if compress else tar
        media_type = mediatypes.OCI_LAYER_GZIP if compress else mediatypes.OCI_LAYER
        descriptors.append(Descriptor(media_type, layout.write_blob(blob), len(blob)))
    config = _config(diff_ids, platform, label)
    config_descriptor = Descriptor(mediatypes.OCI_CONFIG, layout.write_blob(config), len(config))
    manifest = build_manifest(config_descriptor, descriptors)
    layout.write_blob(manifest.raw)
    return manifest


def make_image(
    root: Path,
    tag: str = "v1",
    layers: Sequence[Mapping[str, bytes]] = ({"hello.txt": b"hello\n"},),
    *,
    compress: bool = True,
    label: str = "berth",
) -> SampleImage:
    """A single-platform image in a new (or existing) layout at ``root``."""
    layout = OCILayout.create(root)
    manifest = write_manifest(layout, layers, compress=compress, label=label)
    layout.add_manifest(manifest.descriptor, tag)
    return SampleImage(layout, tag, manifest)


def make_index_image(root: Path, tag: str, platforms: Sequence[Platform]) -> OCILayout:
    """A multi-platform image: one manifest per platform under one index tagged ``tag``."""
    layout = OCILayout.create(root)
    entries = []
    for number, platform in enumerate(platforms):
        manifest = write_manifest(
            layout, [{"arch.txt": str(platform).encode()}], platform=platform, label=str(number)
        )
        entries.append(
            Descriptor(manifest.media_type, manifest.digest, len(manifest.raw), platform=platform)
        )
    index = build_index(entries)
    layout.write_blob(index.raw)
    layout.add_manifest(index.descriptor, tag)
    return layout


def blob_digests(layout: OCILayout) -> set[str]:
    """Every blob file of a layout, checked: its name must be its content's digest."""
    found = set()
    for path in (layout.root / "blobs" / "sha256").iterdir():
        assert not path.name.startswith("."), f"left-over temp file {path}"
        with path.open("rb") as stream:
            digest, _ = Digest.of_stream(stream)
        assert digest.hex == path.name, f"{path} holds {digest}"
        found.add(str(digest))
    return found
