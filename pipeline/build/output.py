"""Where a built image goes besides the cache: OCI layout directories and archives.

Blobs are hard-linked from the cache when both are on one file system (they are
immutable, content-addressed files) and copied otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runners.oci.archive import staged_archive
from runners.oci.layout import OCILayout
from runners.oci.location import LocalFormat, LocalImage
from runners.oci.manifest import ImageManifest


def copy_image(
    source: OCILayout, manifest: ImageManifest, dest: OCILayout, tag: str | None
) -> None:
    """Put ``manifest`` and its blobs from ``source`` into ``dest`` under ``tag``."""
    for blob in (*manifest.blobs(), manifest.descriptor):
        target = dest.blob_path(blob.digest)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.copy")
        try:
            os.link(source.blob_path(blob.digest), staged)
        except OSError:
            shutil.copyfile(source.blob_path(blob.digest), staged)
            os.chmod(staged, 0o644)
        os.replace(staged, target)
    dest.add_manifest(manifest.descriptor, tag)


def export_image(
    source: OCILayout, manifest: ImageManifest, location: LocalImage, default_tag: str | None
) -> str:
    """Write the image to ``oci:DIR[:TAG]`` or ``oci-archive:FILE[:TAG]``; return where."""
    tag = location.tag or default_tag
    if location.format is LocalFormat.LAYOUT:
        copy_image(source, manifest, OCILayout.create(Path(location.path)), tag)
    else:
        with staged_archive(Path(location.path)) as staging:
            copy_image(source, manifest, staging, tag)
    return str(LocalImage(location.format, location.path, tag))
