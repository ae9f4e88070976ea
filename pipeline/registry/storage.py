"""What the registry needs from storage: the :class:`RegistryStorage` protocol and its records.

The protocol is synchronous and may block (disk I/O, fsync); the HTTP layer calls it from
worker threads. :class:`~pipeline.registry.fs.storage.FilesystemRegistryStorage` is the
implementation on a local directory.

The guarantees every implementation gives:

- a blob becomes visible only once all its bytes are stored and match its digest;
- a repository only sees blobs linked into it (by an upload, a mount or a manifest);
- a manifest is stored only after every blob and child manifest it references is
  present in the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from runners.oci.digest import Digest

if TYPE_CHECKING:
    from pipeline.registry.gc import Inventory
    from pipeline.registry.manifests import Descriptor, ParsedManifest


@dataclass(frozen=True)
class UploadState:
    """An upload session: which repository it belongs to and how many bytes it holds."""

    upload_id: str
    repository: str
    offset: int
    started: float
    updated: float


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as stored: its exact bytes, digest and the media type it was pushed with."""

    digest: Digest
    media_type: str
    data: bytes


@dataclass(frozen=True)
class Pin:
    """A manifest or blob kept by garbage collection whatever references it."""

    repository: str
    digest: Digest
    reason: str
    created: float

    def to_json(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "digest": str(self.digest),
            "reason": self.reason,
            "created": self.created,
        }


class BlobReader:
    """An open blob: reads by offset from a file descriptor, so deleting the blob's name
    meanwhile (garbage collection) never cuts a download short."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UploadWriter(Protocol):
    """Appends one request's bytes to an upload session."""

    @property
    def offset(self) -> int:
        """The session's size including what this writer has written so far."""
        ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> UploadState:
        """Keep what was written and release the session."""
        ...

    def abort(self) -> None:
        """Forget what this writer wrote (the session keeps its earlier bytes)."""
        ...


class RegistryStorage(Protocol):
    """Blobs, upload sessions, manifests, tags, referrers and pins of a registry."""

    # -- repositories and blobs -------------------------------------------------------
    def repositories(self) -> list[str]:
        """Every repository name, sorted."""
        ...

    def repository_exists(self, repository: str) -> bool: ...

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The blob's size if it is linked into ``repository``, else ``None``."""
        ...

    def open_blob(self, repository: str, digest: Digest) -> BlobReader | None: ...

    def unlink_blob(self, repository: str, digest: Digest) -> bool:
        """Remove the blob from ``repository`` (its content stays until GC)."""
        ...

    def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        """Link a blob of ``source`` into ``repository``; ``False`` if ``source`` lacks it."""
        ...

    # -- uploads ----------------------------------------------------------------------
    def create_upload(self, repository: str) -> UploadState: ...

    def upload_state(self, repository: str, upload_id: str) -> UploadState:
        """The session's state; ``BLOB_UPLOAD_UNKNOWN`` if it does not exist or expired."""
        ...

    def open_upload(self, repository: str, upload_id: str, start: int | None) -> UploadWriter:
        """A writer appending at ``start`` (which must equal the session's size; ``None``
        means "wherever it is"); 416 ``BLOB_UPLOAD_INVALID`` when it does not."""
        ...

    def complete_upload(self, repository: str, upload_id: str, digest: Digest) -> int:
        """Verify the session's bytes against ``digest``, store and link the blob, end the
        session and return the blob's size. ``DIGEST_INVALID`` discards the session."""
        ...

    def cancel_upload(self, repository: str, upload_id: str) -> None: ...

    def sweep_uploads(self) -> int:
        """Remove expired sessions (and their bytes); return how many were removed."""
        ...

    def free_space(self) -> int | None:
        """Bytes the storage can still take (``None``: unknown); bigger uploads are refused."""
        ...

    # -- manifests, tags, referrers ---------------------------------------------------
    def put_manifest(
        self,
        repository: str,
        data: bytes,
        manifest: ParsedManifest,
        digest: Digest,
        tag: str | None,
    ) -> None:
        """Store a validated manifest (and tag it); ``MANIFEST_BLOB_UNKNOWN`` if it
        references content the repository does not hold."""
        ...

    def get_manifest(self, repository: str, reference: str | Digest) -> StoredManifest | None:
        """The manifest a tag (``str``) or digest names, ``None`` if there is none."""
        ...

    def delete_manifest(self, repository: str, digest: Digest) -> bool:
        """Remove a manifest revision and every tag pointing to it."""
        ...

    def delete_tag(self, repository: str, tag: str) -> bool: ...

    def tags(self, repository: str) -> list[str] | None:
        """The repository's tags, sorted; ``None`` if the repository does not exist."""
        ...

    def referrers(self, repository: str, subject: Digest) -> list[Descriptor]:
        """Descriptors of the manifests in ``repository`` whose ``subject`` is ``subject``."""
        ...

    # -- pins and garbage collection --------------------------------------------------
    def pin(self, repository: str, digest: Digest, reason: str) -> Pin: ...

    def unpin(self, repository: str, digest: Digest) -> bool: ...

    def list_pins(self) -> list[Pin]: ...

    def inventory(self) -> Inventory:
        """Everything garbage collection plans with, read at one moment."""
        ...

    def remove_manifest(self, repository: str, digest: Digest, cutoff: float) -> bool:
        """Remove an untagged manifest revision last touched before ``cutoff``."""
        ...

    def remove_link(self, repository: str, digest: Digest, cutoff: float) -> bool:
        """Remove a repository's link to a blob if it was last touched before ``cutoff``."""
        ...

    def remove_blob(self, digest: Digest, cutoff: float) -> bool:
        """Delete a blob's content if it was last touched before ``cutoff``."""
        ...
