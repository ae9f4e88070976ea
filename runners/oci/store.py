"""Where images come from and go to on the client side.

``ImageSource`` is what a push reads (an OCI layout directory, an OCI archive);
``ImageStore`` is what a pull writes (an OCI layout directory, an agent's layer store).
Blobs are written through a :class:`BlobWriter` that hashes while writing and only
moves the file into place when the digest and size match, so a store never holds a
blob whose name lies about its content.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, runtime_checkable

from runners.errors import DigestError
from runners.oci.digest import Digest
from runners.oci.manifest import Descriptor


@runtime_checkable
class ImageSource(Protocol):
    """Read access to the manifests and blobs of an image collection."""

    def resolve(self, tag: str | None) -> Descriptor:
        """The manifest or index descriptor tagged ``tag`` (``None``: the only one)."""
        ...

    def open_blob(self, digest: Digest) -> BinaryIO:
        """A fresh binary stream of the blob, positioned at its start."""
        ...

    def blob_size(self, digest: Digest) -> int:
        """The blob's size in bytes; raise :class:`OCIError` if it is not there."""
        ...

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        """The whole blob, refusing blobs larger than ``limit`` bytes."""
        ...


@runtime_checkable
class ImageStore(ImageSource, Protocol):
    """An :class:`ImageSource` that blobs and tagged manifests can be written to."""

    def has_blob(self, digest: Digest) -> bool: ...

    def blob_writer(self, digest: Digest, size: int | None = None) -> BlobWriter:
        """A writer that lands the blob under ``digest`` only if the bytes match it."""
        ...

    def add_manifest(self, descriptor: Descriptor, tag: str | None) -> None:
        """Record a manifest (its blob already stored) under ``tag``."""
        ...


class BlobWriter(Protocol):
    """Receives a blob's bytes, possibly in several attempts, then commits or aborts."""

    @property
    def offset(self) -> int:
        """Bytes received so far: where a resumed download continues."""
        ...

    def write(self, data: bytes) -> None: ...

    def reset(self) -> None:
        """Discard everything written (the server restarted from byte 0)."""
        ...

    def commit(self) -> None:
        """Verify size and digest, then publish; raise :class:`DigestError` on mismatch."""
        ...

    def abort(self) -> None:
        """Discard the partial blob; safe to call more than once."""
        ...

    def __enter__(self) -> BlobWriter: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class FileBlobWriter:
    """Writes to a hidden temp file next to ``path`` and renames it there once verified."""

    def __init__(self, path: Path, digest: Digest, size: int | None = None) -> None:
        self.path = path
        self.digest = digest
        self.size = size
        self._hasher = digest.hasher()
        self._offset = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".partial-{digest.hex[:16]}-", dir=path.parent)
        self._tmp = Path(tmp)
        # mkstemp makes 0600 files; blobs are content-addressed public data.
        os.fchmod(fd, 0o644)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._done = False

    @property
    def offset(self) -> int:
        return self._offset

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError(f"blob writer for {self.digest} is closed")
        if self.size is not None and self._offset + len(data) > self.size:
            raise DigestError(
                f"blob {self.digest}: received more than the {self.size} bytes its "
                "descriptor declares"
            )
        self._file.write(data)
        self._hasher.update(data)
        self._offset += len(data)

    def reset(self) -> None:
        if self._file is None:
            raise ValueError(f"blob writer for {self.digest} is closed")
        self._file.seek(0)
        self._file.truncate()
        self._hasher = self.digest.hasher()
        self._offset = 0

    def commit(self) -> None:
        if self._file is None:
            raise ValueError(f"blob writer for {self.digest} is closed")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
        actual = Digest(self.digest.algorithm, self._hasher.hexdigest())
        if self.size is not None and self._offset != self.size:
            self.abort()
            raise DigestError(
                f"blob {self.digest}: got {self._offset} bytes, its descriptor says {self.size}"
            )
        if actual != self.digest:
            self.abort()
            raise DigestError(
                f"blob {self.digest}: content does not match its digest "
                f"(got {actual}, {self._offset} bytes)"
            )
        os.replace(self._tmp, self.path)
        self._done = True

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self._done:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._done = True

    def __enter__(self) -> FileBlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Committed writers have nothing left to do; anything else is an abandoned blob.
        self.abort()
