"""The OCI image layout: a directory with ``oci-layout``, ``index.json`` and ``blobs/``.

Tags are the ``org.opencontainers.image.ref.name`` annotations of ``index.json``
entries, as skopeo, umoci and buildah write them. Blobs land atomically (temp file,
verify, rename) and ``index.json`` is replaced atomically, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from runners.errors import ManifestError, OCIError
from runners.oci.digest import Digest
from runners.oci.manifest import (
    MAX_MANIFEST_SIZE,
    REF_NAME_ANNOTATION,
    Descriptor,
    ImageIndex,
    build_index,
    parse_index,
)
from runners.oci.store import FileBlobWriter

LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = "1.0.0"
INDEX_FILE = "index.json"


class OCILayout:
    """An OCI image layout directory; an :class:`ImageStore` and an :class:`ImageSource`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._index_lock = threading.Lock()

    @classmethod
    def create(cls, root: Path) -> OCILayout:
        """Open ``root`` as a layout, making the directory and its files if missing."""
        layout = cls(root)
        layout.root.mkdir(parents=True, exist_ok=True)
        (layout.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = layout.root / LAYOUT_FILE
        if marker.exists():
            layout._check_marker()
        else:
            _write_atomic(marker, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        if not (layout.root / INDEX_FILE).exists():
            layout._write_index(build_index([]))
        return layout

    @classmethod
    def open(cls, root: Path) -> OCILayout:
        """Open an existing layout; raise :class:`OCIError` if ``root`` is not one."""
        layout = cls(root)
        layout._check_marker()
        return layout

    def _check_marker(self) -> None:
        marker = self.root / LAYOUT_FILE
        try:
            doc = json.loads(marker.read_bytes())
        except FileNotFoundError:
            raise OCIError(
                f"{self.root}: not an OCI image layout (no {LAYOUT_FILE} file)"
            ) from None
        except (OSError, ValueError) as exc:
            raise OCIError(f"{marker}: unreadable: {exc}") from exc
        version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise OCIError(f"{marker}: unsupported imageLayoutVersion {version!r}")

    # blobs

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: Digest) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise OCIError(f"{self.root}: blob {digest} is missing") from None

    def open_blob(self, digest: Digest) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise OCIError(f"{self.root}: blob {digest} is missing") from None

    def read_blob(self, digest: Digest, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        size = self.blob_size(digest)
        if size > limit:
            raise OCIError(f"{self.root}: blob {digest} is {size} bytes, more than {limit}")
        with self.open_blob(digest) as stream:
            return stream.read()

    def blob_writer(self, digest: Digest, size: int | None = None) -> FileBlobWriter:
        return FileBlobWriter(self.blob_path(digest), digest, size)

    def write_blob(self, data: bytes) -> Digest:
        """Store ``data`` (small blobs: configs, manifests) and return its digest."""
        digest = Digest.of(data)
        if not self.has_blob(digest):
            with self.blob_writer(digest, len(data)) as writer:
                writer.write(data)
                writer.commit()
        return digest

    # index.json

    def index(self) -> ImageIndex:
        path = self.root / INDEX_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise OCIError(f"{self.root}: not an OCI image layout (no {INDEX_FILE})") from None
        try:
            return parse_index(data)
        except ManifestError as exc:
            raise OCIError(f"{path}: {exc}") from exc

    def tags(self) -> list[str]:
        return sorted(
            m.annotations[REF_NAME_ANNOTATION]
            for m in self.index().manifests
            if REF_NAME_ANNOTATION in m.annotations
        )

    def resolve(self, tag: str | None) -> Descriptor:
        manifests = self.index().manifests
        if tag is None:
            if len(manifests) == 1:
                return manifests[0]
            raise OCIError(
                f"{self.root}: holds {len(manifests)} images; name one as oci:DIR:TAG "
                f"(tags: {', '.join(self.tags()) or 'none'})"
            )
        for entry in manifests:
            if entry.annotations.get(REF_NAME_ANNOTATION) == tag:
                return entry
        raise OCIError(
            f"{self.root}: no image tagged {tag!r} (tags: {', '.join(self.tags()) or 'none'})"
        )

    def add_manifest(self, descriptor: Descriptor, tag: str | None) -> None:
        """Add ``descriptor`` to ``index.json``; a tag moves from any entry that had it."""
        if not self.has_blob(descriptor.digest):
            raise OCIError(f"{self.root}: manifest blob {descriptor.digest} is not stored")
        with self._index_lock:
            entries = []
            for entry in self.index().manifests:
                entry_tag = entry.annotations.get(REF_NAME_ANNOTATION)
                if tag is not None and entry_tag == tag:
                    continue
                if tag is None and entry_tag is None and entry.digest == descriptor.digest:
                    continue
                entries.append(entry)
            annotations = dict(descriptor.annotations)
            if tag is not None:
                annotations[REF_NAME_ANNOTATION] = tag
            else:
                annotations.pop(REF_NAME_ANNOTATION, None)
            entries.append(
                Descriptor(
                    media_type=descriptor.media_type,
                    digest=descriptor.digest,
                    size=descriptor.size,
                    annotations=annotations,
                    platform=descriptor.platform,
                    artifact_type=descriptor.artifact_type,
                )
            )
            self._write_index(build_index(entries))

    def _write_index(self, index: ImageIndex) -> None:
        _write_atomic(self.root / INDEX_FILE, index.raw)

    def __repr__(self) -> str:
        return f"OCILayout({str(self.root)!r})"


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
