"""Whole images between a registry and a local image store, several blobs at a time.

A push sends every blob first (skipping or mounting what the registry has), then child
manifests, then the tagged manifest, so a tag never points at an incomplete image.
A pull fetches the manifest (choosing the platform from an index), downloads the blobs
the store lacks, and records the manifest last, for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from runners.errors import ManifestError, OCIError
from runners.oci.digest import Digest
from runners.oci.manifest import (
    DEFAULT_PLATFORM,
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Manifest,
    Platform,
    parse_manifest,
)
from runners.oci.progress import BlobProgress, BlobState, ProgressCallback
from runners.oci.reference import Reference
from runners.oci.store import ImageSource, ImageStore

if TYPE_CHECKING:
    from runners.oci.client import RegistryClient

# An index may point at indexes; real images nest one level, this bounds hostile input.
MAX_INDEX_DEPTH = 4

T = TypeVar("T")


@dataclass(frozen=True)
class BlobResult:
    """What a push or pull did with one blob."""

    digest: Digest
    size: int
    media_type: str
    state: BlobState


@dataclass(frozen=True)
class PushResult:
    """The outcome of :func:`push_image`: where the image is now, and per-blob work."""

    reference: Reference
    digest: Digest
    media_type: str
    blobs: tuple[BlobResult, ...]
    manifests: tuple[Digest, ...]

    @property
    def uploaded_bytes(self) -> int:
        return sum(b.size for b in self.blobs if b.state is BlobState.DONE)


@dataclass(frozen=True)
class PullResult:
    """The outcome of :func:`pull_image`: the image manifest stored and per-blob work."""

    reference: Reference
    digest: Digest
    manifest: ImageManifest
    blobs: tuple[BlobResult, ...]
    index_digest: Digest | None = None
    platform: Platform | None = None

    @property
    def downloaded_bytes(self) -> int:
        return sum(b.size for b in self.blobs if b.state is BlobState.DONE)


def push_image(
    client: RegistryClient,
    source: ImageSource,
    ref: Reference,
    *,
    tag: str | None = None,
    mount_from: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> PushResult:
    """Push the image ``source`` holds under ``tag`` to ``ref``."""
    top = source.resolve(tag)
    manifests: list[Manifest] = []
    blobs: dict[Digest, Descriptor] = {}
    _collect(source, top, manifests, blobs, depth=0)
    for blob in blobs.values():
        actual = source.blob_size(blob.digest)
        if actual != blob.size:
            raise OCIError(
                f"{source!r}: blob {blob.digest} is {actual} bytes but its descriptor says "
                f"{blob.size}; the image is corrupt"
            )

    def push_one(blob: Descriptor) -> BlobResult:
        state = client.push_blob(
            ref,
            partial(source.open_blob, blob.digest),
            digest=blob.digest,
            size=blob.size,
            mount_from=mount_from,
            progress=progress,
        )
        return BlobResult(blob.digest, blob.size, blob.media_type, state)

    results = _run_parallel(push_one, list(blobs.values()), client.options.parallel)
    untagged = ref.with_tag(None)
    for child in manifests[:-1]:
        client.put_manifest(untagged.with_digest(child.digest), child)
    final = manifests[-1]
    client.put_manifest(ref, final)
    return PushResult(
        reference=ref.with_digest(final.digest),
        digest=final.digest,
        media_type=final.media_type,
        blobs=tuple(results),
        manifests=tuple(m.digest for m in manifests),
    )


def _collect(
    source: ImageSource,
    descriptor: Descriptor,
    manifests: list[Manifest],
    blobs: dict[Digest, Descriptor],
    depth: int,
) -> None:
    if depth > MAX_INDEX_DEPTH:
        raise ManifestError(f"{source!r}: indexes nest deeper than {MAX_INDEX_DEPTH} levels")
    raw = source.read_blob(descriptor.digest, MAX_MANIFEST_SIZE)
    if Digest.of(raw, descriptor.digest.algorithm) != descriptor.digest:
        raise OCIError(f"{source!r}: manifest blob {descriptor.digest} does not match its digest")
    try:
        manifest = parse_manifest(raw, descriptor.media_type)
    except ManifestError as exc:
        raise ManifestError(f"{source!r}: {descriptor.digest}: {exc}") from exc
    if isinstance(manifest, ImageIndex):
        for child in manifest.manifests:
            _collect(source, child, manifests, blobs, depth + 1)
    else:
        for blob in manifest.blobs():
            blobs.setdefault(blob.digest, blob)
    if all(m.digest != manifest.digest for m in manifests):
        manifests.append(manifest)


def pull_image(
    client: RegistryClient,
    ref: Reference,
    store: ImageStore,
    *,
    tag: str | None = None,
    platform: Platform = DEFAULT_PLATFORM,
    progress: ProgressCallback | None = None,
) -> PullResult:
    """Pull ``ref`` into ``store`` and name it ``tag`` (default: the reference's tag)."""
    top = client.get_manifest(ref)
    index_digest: Digest | None = None
    chosen_platform: Platform | None = None
    if isinstance(top, ImageIndex):
        entry = top.select(platform)
        index_digest, chosen_platform = top.digest, entry.platform
        child = client.get_manifest(ref.with_tag(None).with_digest(entry.digest))
        if not isinstance(child, ImageManifest):
            raise ManifestError(
                f"{ref}: the {platform} entry {entry.digest} of index {top.digest} is itself "
                "an index; berth pulls one image manifest per platform"
            )
        manifest = child
    else:
        manifest = top
    wanted = list({blob.digest: blob for blob in manifest.blobs()}.values())

    def pull_one(blob: Descriptor) -> BlobResult:
        if store.has_blob(blob.digest):
            if progress is not None:
                progress(BlobProgress(blob.digest, blob.size, blob.size, BlobState.EXISTS))
            return BlobResult(blob.digest, blob.size, blob.media_type, BlobState.EXISTS)
        client.get_blob(
            ref,
            blob.digest,
            store.blob_writer(blob.digest, blob.size),
            size=blob.size,
            progress=progress,
        )
        return BlobResult(blob.digest, blob.size, blob.media_type, BlobState.DONE)

    results = _run_parallel(pull_one, wanted, client.options.parallel)
    if not store.has_blob(manifest.digest):
        with store.blob_writer(manifest.digest, len(manifest.raw)) as writer:
            writer.write(manifest.raw)
            writer.commit()
    descriptor = Descriptor(
        manifest.media_type, manifest.digest, len(manifest.raw), platform=chosen_platform
    )
    store.add_manifest(descriptor, tag if tag is not None else ref.tag)
    return PullResult(
        reference=ref.with_digest(manifest.digest) if ref.digest is None else ref,
        digest=manifest.digest,
        manifest=manifest,
        blobs=tuple(results),
        index_digest=index_digest,
        platform=chosen_platform,
    )


def _run_parallel(work: Callable[[T], BlobResult], items: list[T], limit: int) -> list[BlobResult]:
    """Run ``work`` on every item, at most ``limit`` at once; the first failure wins.

    On a failure the items not yet started are cancelled, the running ones finish, and
    the first error is raised.
    """
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(limit, len(items)))) as pool:
        futures: list[Future[BlobResult]] = [pool.submit(work, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception()]
        if failed:
            for future in futures:
                future.cancel()
            wait(futures)
            error = failed[0].exception()
            assert error is not None
            raise error
        return [f.result() for f in futures]
