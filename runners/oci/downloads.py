"""Getting blobs out of a registry, verified against their digests.

A blob streams into a :class:`BlobWriter`, which hashes as it writes and publishes the
file only when digest and size match. A connection that drops mid-blob is picked up
where it stopped with ``Range: bytes=N-``; a server that ignores the range (200) or
answers another one makes the download start over. Both are bounded by the retries.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from runners.errors import DigestError, RegistryUnavailable
from runners.oci.auth import pull_scope
from runners.oci.digest import CHUNK, Digest
from runners.oci.manifest import MAX_MANIFEST_SIZE
from runners.oci.progress import BlobReporter, BlobState, ProgressCallback
from runners.oci.reference import Reference
from runners.oci.responses import content_range_start
from runners.oci.session import RegistrySession
from runners.oci.store import BlobWriter, FileBlobWriter

log = logging.getLogger("berth.oci.client")

# Blob bytes must arrive as stored: a transparently decompressed gzip layer would not
# match its digest, and byte ranges would count the wrong bytes.
IDENTITY = {"Accept-Encoding": "identity"}


class _StartOver(Exception):
    """The server answered a byte range the download cannot continue from."""


def fetch_blob(
    session: RegistrySession, ref: Reference, digest: Digest, limit: int = MAX_MANIFEST_SIZE
) -> bytes:
    """A small blob (an image config) in memory, verified against ``digest``."""
    what = f"blob {digest} of {ref.name}"
    response = session.send(
        "GET",
        session.repo_url(ref, f"blobs/{digest}"),
        what=what,
        scopes=pull_scope(ref),
        headers=dict(IDENTITY),
        stream=True,
        follow_redirects=True,
    )
    if response.status_code != 200:
        raise session.fail(response, what)
    data = session.read_limited(response, limit, what)
    actual = Digest.of(data, digest.algorithm)
    if actual != digest:
        raise DigestError(f"{what}: the registry sent content with digest {actual}")
    return data


def get_blob(
    session: RegistrySession,
    ref: Reference,
    digest: Digest,
    dest: BlobWriter | Path,
    *,
    size: int | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Download a blob into ``dest`` (a store's writer, or a file path), verified.

    On a digest or size mismatch nothing is left behind and :class:`DigestError` is
    raised; after too many broken connections, :class:`RegistryUnavailable`.
    """
    writer = FileBlobWriter(dest, digest, size) if isinstance(dest, Path) else dest
    report = BlobReporter(progress, digest, size or 0)
    with writer:
        report(BlobState.STARTED, 0)
        _download(session, ref, digest, writer, size, report)
        try:
            writer.commit()
        except DigestError as exc:
            raise DigestError(
                f"{ref.name}: {exc}; the registry served corrupt data and nothing was kept"
            ) from exc
        report(BlobState.DONE, writer.offset)


def _download(
    session: RegistrySession,
    ref: Reference,
    digest: Digest,
    writer: BlobWriter,
    size: int | None,
    report: BlobReporter,
) -> None:
    what = f"download of blob {digest} from {ref.name}"
    url = session.repo_url(ref, f"blobs/{digest}")
    failures = 0
    use_range = True
    while True:
        headers = dict(IDENTITY)
        if writer.offset and use_range:
            headers["Range"] = f"bytes={writer.offset}-"
        response = session.send(
            "GET",
            url,
            what=what,
            scopes=pull_scope(ref),
            headers=headers,
            stream=True,
            follow_redirects=True,
        )
        try:
            if response.status_code not in (200, 206):
                raise session.fail(response, what)
            start: int | None = 0
            if response.status_code == 206:
                start = content_range_start(response.headers.get("Content-Range"))
            if start != writer.offset:
                asked = writer.offset
                writer.reset()
                if start != 0:
                    use_range = False
                    raise _StartOver(f"asked for bytes from {asked}, got {start}")
            if size is None and response.status_code == 200:
                length = response.headers.get("Content-Length", "")
                report.total = int(length) if length.isdigit() else 0
            for chunk in response.iter_raw(CHUNK):
                writer.write(chunk)
                report.advance(len(chunk))
        except (httpx.TransportError, _StartOver) as exc:
            failures += 1
            if failures > session.options.retries:
                raise RegistryUnavailable(
                    f"{what}: the transfer from {ref.api_host} kept failing after "
                    f"{writer.offset} bytes ({exc!r}); try again later"
                ) from exc
            log.info("resuming %s at byte %d after %r", what, writer.offset, exc)
            session.sleep(session.delay(failures))
            continue
        finally:
            response.close()
        if size is not None and writer.offset < size:
            failures += 1
            if failures > session.options.retries:
                raise RegistryUnavailable(
                    f"{what}: the registry kept ending the transfer early "
                    f"({writer.offset} of {size} bytes)"
                )
            session.sleep(session.delay(failures))
            continue
        return
