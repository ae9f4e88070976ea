"""Deterministic layer tars: the same entries always make the same bytes and digests.

A :class:`LayerWriter` takes :class:`LayerEntry` values (the caller sorts them) and writes
a PAX tar through a gzip stream with a fixed header (no name, mtime 0) at a fixed level,
hashing the uncompressed bytes (the ``diff_id``) and the compressed ones (the blob
digest) as they pass. Owners are numeric with empty user and group names, mtimes are
clamped, access and change times are never written. Hard links and
``security.capability`` attributes are kept; whiteouts are written the OCI way.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO, Protocol

from runners.errors import LayerError
from runners.oci.digest import CHUNK, Digest

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
CAPABILITY_XATTR = "security.capability"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
# A fixed level: the same bytes in must give the same blob digest on every build.
GZIP_LEVEL = 1
# gzip member header: deflate, no flags (no name), mtime 0, no extra flags, OS unix
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
_BLOCK = 1 << 20
_WORKERS = 2
_SAMPLE = 64 * 1024


class Readable(Protocol):
    """Anything with ``read(n)``: a file, a tar member."""

    def read(self, size: int = ..., /) -> bytes: ...


class EntryKind(Enum):
    """What one tar entry of a layer is."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    WHITEOUT = "whiteout"  # NAME was deleted: written as ``.wh.NAME``
    OPAQUE = "opaque"  # the directory NAME hides what lower layers hold in it


@dataclass(frozen=True)
class LayerEntry:
    """One entry: ``name`` is relative (``usr/bin/x``), without a leading ``/``."""

    name: str
    kind: EntryKind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    source: Path | None = None  # where a FILE's bytes are read from
    data: bytes | None = None  # or the bytes themselves (small generated files)
    reader: Callable[[], AbstractContextManager[Readable]] | None = None  # or a stream
    linkname: str = ""
    xattrs: Mapping[str, bytes] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class LayerDigests:
    """What a written layer hashed to: blob digest and size, and the diff id."""

    digest: Digest
    size: int
    diff_id: Digest
    tar_size: int


class _GzipHashingSink:
    """File-like target of tarfile: hashes, compresses, hashes again, writes.

    The tar stream is cut into fixed 1 MiB blocks, each compressed on its own (raw
    deflate ending in a sync flush, as pigz does) on a small thread pool, and the
    results are written in order inside one gzip member with a fixed header. The
    fixed block size keeps the output a function of the input alone, while zlib,
    which releases the GIL, compresses several blocks at once.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._diff = hashlib.sha256()
        self._blob = hashlib.sha256()
        self._crc = 0
        self._buffer = bytearray()
        self._pending: deque[Future[bytes]] = deque()
        self._pool = ThreadPoolExecutor(max_workers=_WORKERS)
        self.tar_size = 0
        self.blob_size = 0
        self._emit(_GZIP_HEADER)

    def write(self, data: bytes) -> int:
        self._diff.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self.tar_size += len(data)
        self._buffer += data
        while len(self._buffer) >= _BLOCK:
            self._submit(bytes(self._buffer[:_BLOCK]))
            del self._buffer[:_BLOCK]
        return len(data)

    def _submit(self, block: bytes) -> None:
        self._pending.append(self._pool.submit(_deflate_block, block))
        while len(self._pending) > 2 * _WORKERS:
            self._emit(self._pending.popleft().result())

    def _emit(self, data: bytes) -> None:
        if data:
            self._blob.update(data)
            self.blob_size += len(data)
            self._out.write(data)

    def finish(self) -> LayerDigests:
        try:
            if self._buffer:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            while self._pending:
                self._emit(self._pending.popleft().result())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        # an empty final block ends the deflate stream; then CRC-32 and size mod 2**32
        self._emit(zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15).flush())
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self.tar_size & 0xFFFFFFFF))
        return LayerDigests(
            digest=Digest("sha256", self._blob.hexdigest()),
            size=self.blob_size,
            diff_id=Digest("sha256", self._diff.hexdigest()),
            tar_size=self.tar_size,
        )


def _deflate_block(block: bytes) -> bytes:
    # Already-compressed data (archives, media, random bytes) only costs time to
    # deflate: a sample decides, from the content alone, whether the block is stored.
    sample = block[:_SAMPLE]
    level = GZIP_LEVEL
    if len(sample) == _SAMPLE and len(zlib.compress(sample, GZIP_LEVEL)) > 0.95 * _SAMPLE:
        level = 0
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)


class LayerWriter:
    """Writes entries into a gzip-compressed layer tar on ``out``; call :meth:`finish`."""

    def __init__(
        self, out: BinaryIO, expected: Mapping[Path, tuple[int, int, int]] | None = None
    ) -> None:
        self._sink = _GzipHashingSink(out)
        self._tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115 -- closed in finish()
            fileobj=self._sink,
            mode="w|",
            format=tarfile.PAX_FORMAT,
            bufsize=CHUNK,
        )
        self.entries = 0
        # what each source file was when its bytes went in (size, mtime, inode)
        self.sources: dict[Path, tuple[int, int, int]] = {}
        # what they must still be, when the caller saw them earlier (see source_identity)
        self.expected: dict[Path, tuple[int, int, int]] = dict(expected or {})

    def add(self, entry: LayerEntry) -> None:
        info = entry_tarinfo(entry)
        self.entries += 1
        if entry.kind is not EntryKind.FILE:
            self._tar.addfile(info)
            return
        if entry.data is not None:
            self._tar.addfile(info, _BytesReader(entry.data))
            return
        if entry.reader is not None:
            with entry.reader() as member:
                self._tar.addfile(info, member)
            return
        if entry.source is None:
            raise LayerError(f"layer entry {entry.name!r}: a file needs a source")
        with entry.source.open("rb") as stream:
            seen = os.fstat(stream.fileno())
            if seen.st_size != entry.size:
                raise LayerError(
                    f"{entry.source}: changed while the layer was written "
                    f"({entry.size} bytes expected, {seen.st_size} now); build again"
                )
            identity = source_identity(seen)
            wanted = self.expected.get(entry.source, identity)
            if identity != wanted:
                raise LayerError(f"{entry.source}: changed while the build ran; build again")
            self._tar.addfile(info, stream)
            if source_identity(os.fstat(stream.fileno())) != identity:
                raise LayerError(
                    f"{entry.source}: changed while the layer was written; build again"
                )
            self.sources[entry.source] = identity

    def finish(self) -> LayerDigests:
        self._tar.close()
        return self._sink.finish()


def source_identity(info: os.stat_result) -> tuple[int, int, int]:
    """Size, mtime and inode: a file that still has them was not rewritten since."""
    return info.st_size, info.st_mtime_ns, info.st_ino


def entry_tarinfo(entry: LayerEntry) -> tarfile.TarInfo:
    """The tar header of ``entry`` as a layer holds it (a file's size included)."""
    info = tarfile.TarInfo(_tar_name(entry))
    info.mode = entry.mode & 0o7777
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = entry.mtime
    if entry.xattrs:
        info.pax_headers = {
            f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
            for key, value in sorted(entry.xattrs.items())
        }
    if entry.kind is EntryKind.FILE:
        info.type = tarfile.REGTYPE
        info.size = len(entry.data) if entry.data is not None else entry.size
    elif entry.kind is EntryKind.DIR:
        info.type = tarfile.DIRTYPE
    elif entry.kind is EntryKind.SYMLINK:
        info.type, info.linkname = tarfile.SYMTYPE, entry.linkname
    elif entry.kind is EntryKind.HARDLINK:
        info.type, info.linkname = tarfile.LNKTYPE, entry.linkname
    else:
        # whiteouts and opaque markers are empty regular files owned by root
        info.type, info.mode, info.uid, info.gid = tarfile.REGTYPE, 0o644, 0, 0
        info.pax_headers = {}
    return info


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk


def _tar_name(entry: LayerEntry) -> str:
    name = entry.name.strip("/")
    if not name or name.split("/")[0] == "..":
        raise LayerError(f"layer entry {entry.name!r}: not a relative path inside the layer")
    parent, _, base = name.rpartition("/")
    if entry.kind is EntryKind.WHITEOUT:
        base = WHITEOUT_PREFIX + base
    elif entry.kind is EntryKind.OPAQUE:
        return f"{name}/{OPAQUE_MARKER}"
    elif entry.kind is EntryKind.DIR:
        return f"{name}/"
    return f"{parent}/{base}" if parent else base


def write_layer(entries: Iterable[LayerEntry], out: BinaryIO) -> LayerDigests:
    """Write ``entries`` (in the order given) as one layer blob to ``out``."""
    writer = LayerWriter(out)
    for entry in entries:
        writer.add(entry)
    return writer.finish()


def clamp(mtime: float, epoch: int) -> int:
    """``mtime`` in whole seconds, never later than ``epoch`` (SOURCE_DATE_EPOCH)."""
    return min(int(mtime), epoch)


def tree_entries(
    root: Path,
    *,
    epoch: int,
    prefix: str = "",
    overlay_whiteouts: bool = False,
    skip: frozenset[str] = frozenset(),
) -> Iterator[LayerEntry]:
    """The entries of the directory tree ``root``, sorted, named below ``prefix``.

    Owners and modes are the tree's own, mtimes clamped to ``epoch``, files that share
    an inode become hard links to the first name. With ``overlay_whiteouts`` (an
    overlayfs upper directory), 0:0 character devices become OCI whiteouts and
    ``trusted.overlay.opaque`` directories get an opaque marker. Names in ``skip``
    (relative to ``root``) are left out.
    """
    seen: dict[tuple[int, int], str] = {}
    yield from _walk(root, prefix.strip("/"), "", epoch, overlay_whiteouts, skip, seen)


def _walk(
    directory: Path,
    prefix: str,
    rel: str,
    epoch: int,
    overlay: bool,
    skip: frozenset[str],
    seen: dict[tuple[int, int], str],
) -> Iterator[LayerEntry]:
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise LayerError(f"{directory}: cannot list: {exc.strerror}") from exc
    for name in names:
        rel_name = f"{rel}/{name}" if rel else name
        if rel_name in skip:
            continue
        path = directory / name
        info = os.lstat(path)
        full = f"{prefix}/{rel_name}" if prefix else rel_name
        mode = info.st_mode
        common = {
            "mode": stat.S_IMODE(mode),
            "uid": info.st_uid,
            "gid": info.st_gid,
            "mtime": clamp(info.st_mtime, epoch),
        }
        if stat.S_ISDIR(mode):
            yield LayerEntry(full, EntryKind.DIR, xattrs=_xattrs(path), **common)  # type: ignore[arg-type]
            if overlay and _is_opaque(path):
                yield LayerEntry(full, EntryKind.OPAQUE)
            yield from _walk(path, prefix, rel_name, epoch, overlay, skip, seen)
        elif stat.S_ISLNK(mode):
            yield LayerEntry(full, EntryKind.SYMLINK, linkname=os.readlink(path), **common)  # type: ignore[arg-type]
        elif stat.S_ISREG(mode):
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and key in seen:
                yield LayerEntry(full, EntryKind.HARDLINK, linkname=seen[key], **common)  # type: ignore[arg-type]
                continue
            seen[key] = full
            yield LayerEntry(
                full,
                EntryKind.FILE,
                size=info.st_size,
                source=path,
                xattrs=_xattrs(path),
                **common,  # type: ignore[arg-type]
            )
        elif overlay and stat.S_ISCHR(mode) and info.st_rdev == 0:
            yield LayerEntry(full, EntryKind.WHITEOUT)
        else:
            raise LayerError(
                f"{path}: a device, FIFO or socket cannot go into an image layer; "
                "remove it in the same step that made it"
            )


def _xattrs(path: Path) -> dict[str, bytes]:
    try:
        value = os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        return {}
    return {CAPABILITY_XATTR: value}


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False
