"""Layer streams: undoing gzip or zstd on the fly while hashing both sides.

A layer is identified twice: by the digest of the blob as stored (compressed) and by
its diff id, the digest of the uncompressed tar. :class:`LayerStream` computes both in
one pass, so an unpacked layer can be checked against either without a second read.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import importlib
import io
import zlib
from typing import IO, TYPE_CHECKING, Any, Protocol

from runners.errors import LayerError
from runners.oci import mediatypes
from runners.oci.digest import Digest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Readable(Protocol):
    """Anything with ``read``: a file, a socket stream, a decompressor."""

    def read(self, size: int = ..., /) -> bytes: ...


class Compression(enum.Enum):
    """How a layer blob is compressed; ``AUTO`` detects it from the first bytes."""

    AUTO = "auto"
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


_BY_MEDIA_TYPE = {
    mediatypes.OCI_LAYER: Compression.NONE,
    mediatypes.OCI_LAYER_GZIP: Compression.GZIP,
    mediatypes.DOCKER_LAYER_GZIP: Compression.GZIP,
    mediatypes.DOCKER_FOREIGN_LAYER: Compression.GZIP,
    mediatypes.OCI_LAYER_ZSTD: Compression.ZSTD,
}


def compression_of(media_type: str) -> Compression:
    """The compression a layer media type declares; ``AUTO`` for types berth does not know."""
    return _BY_MEDIA_TYPE.get(media_type, Compression.AUTO)


class HashingReader(io.RawIOBase):
    """Reads from ``inner`` and hashes and counts every byte that passes through."""

    def __init__(
        self,
        inner: Readable,
        algorithm: str = "sha256",
        *,
        corrupt_on: tuple[type[Exception], ...] = (),
        what: str = "",
    ) -> None:
        super().__init__()
        self._inner = inner
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self._corrupt_on = corrupt_on
        self._what = what
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except self._corrupt_on as exc:
            # A decompressor's complaint (zlib.error, EOFError, ZstdError) means the
            # blob is damaged or truncated; say so once, here, for every codec.
            raise LayerError(f"layer stream is corrupt ({self._what}): {exc}") from exc
        count = len(data)
        view[:count] = data
        self._hash.update(data)
        self.size += count
        return count

    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hash.hexdigest())

    def drain(self) -> None:
        """Read to the end so that the digest covers the whole stream."""
        while self.read(CHUNK):
            pass


class _Prefixed(io.RawIOBase):
    """``prefix`` followed by the rest of ``inner``: puts back the bytes read to sniff."""

    def __init__(self, prefix: bytes, inner: Readable) -> None:
        super().__init__()
        self._prefix = prefix
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            count = min(len(view), len(self._prefix))
            view[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        data = self._inner.read(len(view))
        view[: len(data)] = data
        return len(data)


class LayerStream:
    """The uncompressed tar of a layer blob, with the blob digest and diff id on the side.

    ``tar`` is the stream to hand to :mod:`tarfile`; after :meth:`finish` the digests
    and sizes cover every byte of the blob.
    """

    def __init__(self, blob: Readable, compression: Compression = Compression.AUTO) -> None:
        # errors of the blob's own stream (a dropped connection) are not corruption
        self._blob = HashingReader(blob)
        head = _read_up_to(self._blob, 4)
        if compression is Compression.AUTO:
            compression = _sniff(head)
        self.compression = compression
        raw = io.BufferedReader(_Prefixed(head, self._blob), CHUNK)
        reader, errors = _decompressor(compression, raw)
        self._tar = HashingReader(reader, corrupt_on=errors, what=compression.value)
        self.tar: IO[bytes] = io.BufferedReader(self._tar, CHUNK)

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the readers; the blob stream itself stays open (its opener owns it)."""
        self.tar.close()

    def finish(self) -> None:
        """Consume what the tar reader left (end-of-archive padding, trailing frames)."""
        while self.tar.read(CHUNK):
            pass
        self._blob.drain()

    @property
    def blob_digest(self) -> Digest:
        return self._blob.digest()

    @property
    def blob_size(self) -> int:
        return self._blob.size

    @property
    def diff_id(self) -> Digest:
        return self._tar.digest()

    @property
    def size(self) -> int:
        return self._tar.size


def _read_up_to(stream: io.RawIOBase, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = stream.read(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _sniff(head: bytes) -> Compression:
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


def _decompressor(
    compression: Compression, raw: IO[bytes]
) -> tuple[Readable, tuple[type[Exception], ...]]:
    """The decompressing reader and the exceptions by which it reports damaged input."""
    if compression is Compression.GZIP:
        return gzip.GzipFile(fileobj=raw, mode="rb"), (EOFError, zlib.error, gzip.BadGzipFile)
    if compression is Compression.ZSTD:
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError as exc:
            raise LayerError(
                "layer is zstd-compressed but the Python module 'zstandard' is not installed;"
                " install it (pip install zstandard) or pull a gzip variant of the image"
            ) from exc
        reader: Readable = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader, (zstandard.ZstdError, EOFError)
    return raw, ()
