"""The registry client: the OCI distribution API (``/v2/``) for berth and its CLI.

:class:`RegistryClient` is the one object the rest of berth holds. It owns a pooled HTTP
session (:mod:`runners.oci.session`: auth, TLS, plain-HTTP policy, retries) and offers
the API by noun: blobs (:mod:`uploads`, :mod:`downloads`), manifests and tags (here),
and whole images (:mod:`transfer`). It is thread-safe; pushes and pulls move several
blobs at once over reused connections.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from types import TracebackType

import httpx

from runners.errors import DigestError, ManifestError, RegistryError, RegistryNotFound
from runners.oci import downloads, mediatypes, transfer, uploads
from runners.oci.auth import CredentialStore, pull_scope, push_scope, repository_scopes
from runners.oci.digest import Digest
from runners.oci.manifest import (
    DEFAULT_PLATFORM,
    MAX_MANIFEST_SIZE,
    Descriptor,
    Manifest,
    Platform,
    parse_manifest,
)
from runners.oci.progress import BlobState, ProgressCallback
from runners.oci.reference import Reference
from runners.oci.responses import next_link, with_query
from runners.oci.session import RegistryOptions, RegistrySession
from runners.oci.store import BlobWriter, ImageSource, ImageStore
from runners.oci.transfer import PullResult, PushResult
from runners.oci.uploads import BlobData

__all__ = ["PullResult", "PushResult", "RegistryClient", "RegistryOptions"]

# Pages of a tag list the client follows before it concludes the registry loops.
MAX_TAG_PAGES = 10_000


class RegistryClient:
    """Talks the OCI distribution API to any number of registries."""

    def __init__(
        self,
        options: RegistryOptions | None = None,
        credentials: CredentialStore | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options or RegistryOptions()
        self.session = RegistrySession(
            self.options, credentials or CredentialStore(), transport=transport, sleep=sleep
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self, registry: str) -> str:
        """Check that ``registry`` speaks ``/v2/``; return the scheme that reaches it."""
        return self.session.ping(registry)

    # blobs

    def stat_blob(self, ref: Reference, digest: Digest) -> int | None:
        """The blob's size if ``ref``'s repository has it, else None."""
        return uploads.stat_blob(self.session, ref, digest)

    def blob_exists(self, ref: Reference, digest: Digest) -> bool:
        return uploads.stat_blob(self.session, ref, digest) is not None

    def mount_blob(self, ref: Reference, digest: Digest, from_repository: str) -> bool:
        """Link ``digest`` from ``from_repository`` on the same registry; True if mounted."""
        return uploads.mount_blob(self.session, ref, digest, from_repository)

    def push_blob(
        self,
        ref: Reference,
        data: BlobData,
        *,
        digest: Digest | None = None,
        size: int | None = None,
        mount_from: Sequence[str] = (),
        progress: ProgressCallback | None = None,
        check_exists: bool = True,
    ) -> BlobState:
        """Make ``ref``'s repository hold a blob; returns EXISTS, MOUNTED or DONE (uploaded).

        ``data`` is the bytes, a file, or a function opening a fresh stream (called again
        on each retry; ``digest`` and ``size`` are then required).
        """
        return uploads.push_blob(
            self.session,
            ref,
            data,
            digest=digest,
            size=size,
            mount_from=mount_from,
            progress=progress,
            check_exists=check_exists,
        )

    def get_blob(
        self,
        ref: Reference,
        digest: Digest,
        dest: BlobWriter | Path,
        *,
        size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Download a blob into a store's writer or a file, verified, resuming with Range."""
        downloads.get_blob(self.session, ref, digest, dest, size=size, progress=progress)

    def fetch_blob(self, ref: Reference, digest: Digest, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        """A small blob (an image config) in memory, verified against ``digest``."""
        return downloads.fetch_blob(self.session, ref, digest, limit)

    # manifests and tags

    def get_manifest(self, ref: Reference) -> Manifest:
        """The manifest or index ``ref`` names, verified against its digest."""
        what = f"manifest {ref}"
        response = self.session.send(
            "GET",
            self.session.repo_url(ref, f"manifests/{ref.identifier}"),
            what=what,
            scopes=pull_scope(ref),
            headers={"Accept": mediatypes.MANIFEST_ACCEPT, "Accept-Encoding": "identity"},
            stream=True,
        )
        if response.status_code != 200:
            raise self.session.fail(response, what)
        content_type = response.headers.get("Content-Type")
        echoed = response.headers.get("Docker-Content-Digest")
        data = self.session.read_limited(response, MAX_MANIFEST_SIZE, what)
        try:
            manifest = parse_manifest(data, content_type)
        except ManifestError as exc:
            raise ManifestError(f"{ref}: {exc}") from exc
        expected = ref.digest or _parse_digest_header(echoed)
        if expected is not None:
            actual = Digest.of(data, expected.algorithm)
            if actual != expected:
                raise DigestError(
                    f"manifest {ref} from {ref.registry}: content digest {actual} does not "
                    f"match {expected}; the registry served corrupt or substituted data"
                )
        return manifest

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor of the manifest ``ref`` names, or None if it does not exist."""
        what = f"HEAD manifest {ref}"
        response = self.session.send(
            "HEAD",
            self.session.repo_url(ref, f"manifests/{ref.identifier}"),
            what=what,
            scopes=pull_scope(ref),
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
        )
        with closing(response):
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise self.session.fail(response, what)
            digest = _parse_digest_header(response.headers.get("Docker-Content-Digest"))
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            size = response.headers.get("Content-Length", "")
        if digest is None or not size.isdigit() or media_type not in mediatypes.MANIFESTS:
            # Some registries leave the headers out of HEAD answers; the body settles it.
            return self.get_manifest(ref).descriptor
        return Descriptor(media_type, digest, int(size))

    def put_manifest(self, ref: Reference, manifest: Manifest) -> Digest:
        """Store ``manifest`` under ``ref``'s tag (or its digest when it has no tag)."""
        target = ref.tag or str(manifest.digest)
        if ref.digest is not None and ref.digest != manifest.digest:
            raise DigestError(f"{ref}: manifest digest is {manifest.digest}, not {ref.digest}")
        what = f"manifest {ref.name}:{target}" if ref.tag else f"manifest {ref.name}@{target}"
        response = self.session.send(
            "PUT",
            self.session.repo_url(ref, f"manifests/{target}"),
            what=what,
            scopes=push_scope(ref),
            headers={"Content-Type": manifest.media_type},
            content=manifest.raw,
        )
        with closing(response):
            if response.status_code not in (200, 201):
                raise self.session.fail(response, what)
            echoed = _parse_digest_header(response.headers.get("Docker-Content-Digest"))
        if echoed is not None and echoed != manifest.digest:
            raise RegistryError(
                f"registry {ref.registry} stored {what} as {echoed}, expected {manifest.digest}"
            )
        return manifest.digest

    def delete_manifest(self, ref: Reference) -> Digest:
        """Delete the manifest ``ref`` names (a tag is resolved to its digest first)."""
        digest = ref.digest
        if digest is None:
            found = self.head_manifest(ref)
            if found is None:
                raise RegistryNotFound(f"manifest {ref}: not found on {ref.registry}")
            digest = found.digest
        what = f"delete of manifest {ref.name}@{digest}"
        response = self.session.send(
            "DELETE",
            self.session.repo_url(ref, f"manifests/{digest}"),
            what=what,
            scopes=repository_scopes(ref.repository, ["delete", "pull", "push"]),
        )
        with closing(response):
            if response.status_code not in (200, 202):
                raise self.session.fail(response, what)
        return digest

    def list_tags(self, ref: Reference, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``ref``'s repository, following ``Link`` pagination."""
        what = f"tag list of {ref.name}"
        url = self.session.repo_url(ref, "tags/list")
        if page_size is not None:
            url = with_query(url, n=str(page_size))
        tags: list[str] = []
        seen: set[str] = set()
        for _ in range(MAX_TAG_PAGES):
            seen.add(url)
            response = self.session.send("GET", url, what=what, scopes=pull_scope(ref))
            with closing(response):
                if response.status_code != 200:
                    raise self.session.fail(response, what)
                try:
                    page = response.json()
                except ValueError as exc:
                    raise RegistryError(f"{what}: registry sent invalid JSON: {exc}") from exc
                link = next_link(response.headers.get("Link"), url)
            names = page.get("tags") if isinstance(page, dict) else None
            if names is not None and not (
                isinstance(names, list) and all(isinstance(t, str) for t in names)
            ):
                raise RegistryError(f"{what}: 'tags' is not a list of strings")
            tags.extend(names or [])
            if link is None:
                return tags
            if link in seen:
                raise RegistryError(f"{what}: the registry's Link pagination loops at {link}")
            url = link
        raise RegistryError(f"{what}: more than {MAX_TAG_PAGES} pages; giving up")

    # images

    def push_image(
        self,
        source: ImageSource,
        ref: Reference,
        *,
        tag: str | None = None,
        mount_from: Sequence[str] = (),
        progress: ProgressCallback | None = None,
    ) -> PushResult:
        """Push the image tagged ``tag`` in ``source`` to ``ref``: blobs first, manifest last."""
        return transfer.push_image(
            self, source, ref, tag=tag, mount_from=mount_from, progress=progress
        )

    def pull_image(
        self,
        ref: Reference,
        store: ImageStore,
        *,
        tag: str | None = None,
        platform: Platform = DEFAULT_PLATFORM,
        progress: ProgressCallback | None = None,
    ) -> PullResult:
        """Pull ``ref`` (for ``platform`` if it is an index) into ``store`` under ``tag``."""
        return transfer.pull_image(self, ref, store, tag=tag, platform=platform, progress=progress)


def _parse_digest_header(value: str | None) -> Digest | None:
    if not value:
        return None
    try:
        return Digest.parse(value.strip())
    except DigestError:
        return None
