"""OCI archives: an OCI image layout packed into one (uncompressed) tar file.

Reading does not unpack anything: the tar is indexed once and each blob is read straight
from its offset through its own file handle, so parallel pushes from one archive do not
fight over a shared file position. Writing stages a layout directory next to the
target and packs it deterministically (sorted names, zero mtimes, root owner).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runners.errors import ManifestError, OCIError
from runners.oci.digest import CHUNK, Digest
from runners.oci.layout import INDEX_FILE, LAYOUT_FILE, OCILayout
from runners.oci.manifest import (
    MAX_MANIFEST_SIZE,
    REF_NAME_ANNOTATION,
    Descriptor,
    ImageIndex,
    parse_index,
)


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


class _Section(io.RawIOBase):
    """``size`` bytes of a file starting at ``offset``, read through a private handle."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        super().__init__()
        self._file = path.open("rb")
        self._start = offset
        self._size = size
        self._file.seek(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size - self._left

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._size}[whence]
        target = min(max(base + pos, 0), self._size)
        self._file.seek(self._start + target)
        self._left = self._size - target
        return target

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        count = self._file.readinto(view)
        if not count:
            raise OCIError(f"{self._file.name}: archive ends inside a blob (truncated file?)")
        self._left -= count
        return count

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class OCIArchive:
    """A read-only :class:`ImageSource` over an ``oci-archive`` tar file."""

    def __init__(self, path: Path, members: dict[str, _Member]) -> None:
        self.path = path
        self._members = members

    @classmethod
    def open(cls, path: Path) -> OCIArchive:
        path = Path(path)
        members: dict[str, _Member] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for info in tar:
                    if info.isfile():
                        name = os.path.normpath(info.name).lstrip("/")
                        members[name] = _Member(info.offset_data, info.size)
        except FileNotFoundError:
            raise OCIError(f"{path}: no such OCI archive") from None
        except tarfile.TarError as exc:
            raise OCIError(
                f"{path}: not an uncompressed tar file ({exc}); oci-archive files are plain "
                "tar (decompress it first)"
            ) from exc
        archive = cls(path, members)
        if LAYOUT_FILE not in members or INDEX_FILE not in members:
            raise OCIError(f"{path}: not an OCI archive (no {LAYOUT_FILE} or {INDEX_FILE})")
        try:
            doc = json.loads(archive._read_member(LAYOUT_FILE, 4096))
        except ValueError as exc:
            raise OCIError(f"{path}: {LAYOUT_FILE}: not JSON: {exc}") from exc
        version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        if not isinstance(version, str) or not version.startswith("1."):
            raise OCIError(f"{path}: unsupported imageLayoutVersion {version!r}")
        return archive

    def _read_member(self, name: str, limit: int) -> bytes:
        member = self._members[name]
        if member.size > limit:
            raise OCIError(f"{self.path}: {name} is {member.size} bytes, more than {limit}")
        with _Section(self.path, member.offset, member.size) as section:
            return section.read()

    def _member(self, digest: Digest) -> _Member:
        try:
            return self._members[f"blobs/{digest.algorithm}/{digest.hex}"]
        except KeyError:
            raise OCIError(f"{self.path}: blob {digest} is missing") from None

    def index(self) -> ImageIndex:
        try:
            return parse_index(self._read_member(INDEX_FILE, MAX_MANIFEST_SIZE))
        except ManifestError as exc:
            raise OCIError(f"{self.path}: {INDEX_FILE}: {exc}") from exc

    def tags(self) -> list[str]:
        return sorted(
            m.annotations[REF_NAME_ANNOTATION]
            for m in self.index().manifests
            if REF_NAME_ANNOTATION in m.annotations
        )

    def resolve(self, tag: str | None) -> Descriptor:
        manifests = self.index().manifests
        if tag is None and len(manifests) == 1:
            return manifests[0]
        for entry in manifests:
            if tag is not None and entry.annotations.get(REF_NAME_ANNOTATION) == tag:
                return entry
        raise OCIError(
            f"{self.path}: no image tagged {tag!r}; name one as oci-archive:FILE:TAG "
            f"(tags: {', '.join(self.tags()) or 'none'})"
        )

    def has_blob(self, digest: Digest) -> bool:
        return f"blobs/{digest.algorithm}/{digest.hex}" in self._members

    def blob_size(self, digest: Digest) -> int:
        return self._member(digest).size

    def open_blob(self, digest: Digest) -> BinaryIO:
        member = self._member(digest)
        return io.BufferedReader(_Section(self.path, member.offset, member.size), CHUNK)

    def read_blob(self, digest: Digest, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        return self._read_member(f"blobs/{digest.algorithm}/{digest.hex}", limit)

    def __repr__(self) -> str:
        return f"OCIArchive({str(self.path)!r})"


def write_archive(layout: OCILayout, dest: Path) -> None:
    """Pack ``layout`` into the tar file ``dest``, replacing it atomically."""
    dest = Path(dest)
    files = [LAYOUT_FILE, INDEX_FILE]
    blobs = layout.root / "blobs"
    for path in sorted(blobs.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            files.append(path.relative_to(layout.root).as_posix())
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as tar,
        ):
            for directory in _parents(files):
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(info)
            for name in files:
                source = layout.root / name
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = source.stat().st_size, 0o644, 0
                with source.open("rb") as stream:
                    tar.addfile(info, stream)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_archive(dest: Path) -> Iterator[OCILayout]:
    """A scratch layout next to ``dest`` that becomes the archive ``dest`` on success.

    An existing archive at ``dest`` is replaced, not merged; nothing changes on failure.
    """
    dest = Path(dest)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-staging-", dir=dest.parent))
    try:
        layout = OCILayout.create(staging)
        yield layout
        write_archive(layout, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _parents(files: list[str]) -> list[str]:
    dirs = set()
    for name in files:
        parent = os.path.dirname(name)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    return sorted(dirs)
