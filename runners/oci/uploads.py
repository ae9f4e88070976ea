"""Putting blobs into a registry: existence checks, cross-repository mounts, uploads.

Small blobs go up monolithically (``POST`` then one ``PUT ?digest=`` with the body);
larger ones in chunks (``PATCH`` with ``Content-Range``, then ``PUT ?digest=``). Bodies
stream from the source in 1 MiB pieces. A failed upload is restarted from a fresh
session a bounded number of times: a registry that lost a chunk cannot be trusted to
say which bytes it kept.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runners.errors import DigestError, OCIError, RegistryError, RegistryUnavailable
from runners.oci.auth import merge_scopes, pull_scope, push_scope, repository_scopes
from runners.oci.digest import CHUNK, Digest
from runners.oci.progress import BlobReporter, BlobState, ProgressCallback
from runners.oci.reference import Reference
from runners.oci.responses import resolve_location, with_query
from runners.oci.session import RegistrySession

BlobData = bytes | Path | Callable[[], BinaryIO]
OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class UploadSession:
    """An upload the registry opened (``location``), or a mount it completed at once."""

    mounted: bool
    location: str = ""
    min_chunk: int = 0


class BlobBody:
    """A re-iterable request body: ``length`` bytes from ``offset`` of a fresh stream.

    httpx can send it again after a 401 or a redirect, which a generator could not do.
    """

    def __init__(
        self,
        opener: Callable[[], BinaryIO],
        offset: int,
        length: int,
        reporter: BlobReporter,
    ) -> None:
        self._opener = opener
        self._offset = offset
        self._length = length
        self._reporter = reporter

    def __iter__(self) -> Iterator[bytes]:
        self._reporter(BlobState.TRANSFERRING, self._offset)
        with self._opener() as stream:
            if self._offset:
                stream.seek(self._offset)
            left = self._length
            while left > 0:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    raise OCIError(
                        f"blob {self._reporter.digest} ended {left} bytes early while uploading"
                    )
                left -= len(chunk)
                yield chunk
                self._reporter.advance(len(chunk))


def stat_blob(
    session: RegistrySession, ref: Reference, digest: Digest, *, for_push: bool = False
) -> int | None:
    """The blob's size if ``ref``'s repository has it, else None."""
    what = f"HEAD blob {digest} in {ref.name}"
    url = session.repo_url(ref, f"blobs/{digest}")
    scopes = push_scope(ref) if for_push else pull_scope(ref)
    response = session.send("HEAD", url, what=what, scopes=scopes, follow_redirects=True)
    with closing(response):
        if response.status_code == 200:
            length = response.headers.get("Content-Length", "")
            return int(length) if length.isdigit() else 0
        if response.status_code == 404:
            return None
        raise session.fail(response, what)


def start_upload(
    session: RegistrySession, ref: Reference, *, mount: tuple[Digest, str] | None = None
) -> UploadSession:
    """Open an upload, or with ``mount=(digest, repository)`` try a mount first."""
    url = session.repo_url(ref, "blobs/uploads/")
    scopes = push_scope(ref)
    what = f"blob upload to {ref.name}"
    if mount is not None:
        digest, source = mount
        url = with_query(url, mount=str(digest), **{"from": source})
        scopes = merge_scopes(scopes, repository_scopes(source, ["pull"]))
        what = f"mount of {digest} from {source} into {ref.name}"
    response = session.send("POST", url, what=what, scopes=scopes)
    with closing(response):
        if mount is not None and response.status_code == 201:
            return UploadSession(mounted=True)
        if response.status_code != 202:
            raise session.fail(response, what)
        location = resolve_location(url, response.headers.get("Location"), what=what)
        minimum = response.headers.get("OCI-Chunk-Min-Length", "0")
        return UploadSession(False, location, int(minimum) if minimum.isdigit() else 0)


def cancel_upload(session: RegistrySession, ref: Reference, upload: UploadSession) -> None:
    """Abandon an upload; best effort, the registry expires it anyway."""
    with suppress(RegistryError):
        session.send(
            "DELETE",
            upload.location,
            what=f"cancel of an upload to {ref.name}",
            scopes=push_scope(ref),
            retry=False,
        ).close()


def mount_blob(session: RegistrySession, ref: Reference, digest: Digest, source: str) -> bool:
    """Link ``digest`` from repository ``source`` of the same registry; True if mounted."""
    upload = start_upload(session, ref, mount=(digest, source))
    if upload.mounted:
        return True
    cancel_upload(session, ref, upload)
    return False


def push_blob(
    session: RegistrySession,
    ref: Reference,
    data: BlobData,
    *,
    digest: Digest | None = None,
    size: int | None = None,
    mount_from: Sequence[str] = (),
    progress: ProgressCallback | None = None,
    check_exists: bool = True,
) -> BlobState:
    """Make ``ref``'s repository hold the blob; returns EXISTS, MOUNTED or DONE."""
    opener, digest, size = blob_input(data, digest, size)
    report = BlobReporter(progress, digest, size)
    report(BlobState.STARTED, 0)
    if check_exists and stat_blob(session, ref, digest, for_push=True) is not None:
        report(BlobState.EXISTS, size)
        return BlobState.EXISTS
    upload: UploadSession | None = None
    for source in (s for s in mount_from if s != ref.repository):
        if upload is not None:
            cancel_upload(session, ref, upload)
        upload = start_upload(session, ref, mount=(digest, source))
        if upload.mounted:
            report(BlobState.MOUNTED, size)
            return BlobState.MOUNTED
    attempt = 0
    while True:
        try:
            if upload is None:
                upload = start_upload(session, ref)
            _upload(session, ref, upload, opener, digest, size, report)
        except RegistryUnavailable:
            attempt += 1
            if attempt > session.options.retries:
                raise
            upload = None
            session.sleep(session.delay(attempt))
            continue
        report(BlobState.DONE, size)
        return BlobState.DONE


def _upload(
    session: RegistrySession,
    ref: Reference,
    upload: UploadSession,
    opener: Callable[[], BinaryIO],
    digest: Digest,
    size: int,
    report: BlobReporter,
) -> None:
    what = f"upload of blob {digest} to {ref.name}"
    scopes = push_scope(ref)
    location = upload.location
    if size <= session.options.monolithic_limit:
        response = session.send(
            "PUT",
            with_query(location, digest=str(digest)),
            what=what,
            scopes=scopes,
            headers={"Content-Type": OCTETS, "Content-Length": str(size)},
            content=BlobBody(opener, 0, size, report),
            retry=False,
        )
    else:
        chunk = max(session.options.chunk_size, upload.min_chunk, 1)
        offset = 0
        while offset < size:
            length = min(chunk, size - offset)
            response = session.send(
                "PATCH",
                location,
                what=what,
                scopes=scopes,
                headers={
                    "Content-Type": OCTETS,
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                content=BlobBody(opener, offset, length, report),
                retry=False,
            )
            with closing(response):
                if response.status_code != 202:
                    raise session.fail(response, what)
                location = resolve_location(location, response.headers.get("Location"), what=what)
            offset += length
        response = session.send(
            "PUT",
            with_query(location, digest=str(digest)),
            what=what,
            scopes=scopes,
            headers={"Content-Length": "0"},
            retry=False,
        )
    with closing(response):
        if response.status_code != 201:
            raise session.fail(response, what)
        echoed = response.headers.get("Docker-Content-Digest")
    if echoed and echoed != str(digest):
        raise DigestError(f"registry {ref.registry} stored the {what} as {echoed}")


def blob_input(
    data: BlobData, digest: Digest | None, size: int | None
) -> tuple[Callable[[], BinaryIO], Digest, int]:
    """An opener, digest and size for whatever form the blob was given in."""
    if isinstance(data, bytes):
        actual = Digest.of(data, digest.algorithm if digest else "sha256")
        if digest is not None and digest != actual:
            raise DigestError(f"blob to push has digest {actual}, not {digest}")
        return (lambda: io.BytesIO(data)), actual, len(data)
    if isinstance(data, Path):
        path = data
        if digest is None:
            with path.open("rb") as stream:
                digest, _ = Digest.of_stream(stream)
        return (lambda: path.open("rb")), digest, path.stat().st_size
    if digest is None or size is None:
        raise OCIError("push_blob: a stream opener needs the blob's digest and size")
    return data, digest, size
