""":class:`FilesystemRegistryStorage`: the registry's content in a local directory.

See :mod:`pipeline.registry.fs.layout` for the layout. Blob bytes reach their final name
only by ``rename`` after they were fsynced and matched their digest, so a crash or a
client that disconnects can never leave a partial blob behind a digest. Concurrent
uploads of the same content both succeed: the second finds the blob present (or renames
identical bytes over it, which is atomic) and only links it.

Garbage collection runs while the server serves; every write that makes content
"needed" again (linking, mounting, tagging, pushing a manifest) first touches the
content's modification time, and the ``remove_*`` methods refuse anything touched after
the GC's cutoff.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import RegistryServerError
from pipeline.registry.clock import Clock, SystemClock
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.fs.layout import (
    Layout,
    fsync_dir,
    is_temporary,
    mtime,
    touch,
    write_atomic,
)
from pipeline.registry.fs.uploads import UploadArea
from pipeline.registry.gc import BlobRecord, Inventory, ManifestRecord, RepositoryRecord
from pipeline.registry.manifests import Descriptor, ParsedManifest, parse_descriptor, parse_manifest
from pipeline.registry.names import is_valid_name, is_valid_tag
from pipeline.registry.storage import (
    BlobReader,
    Pin,
    StoredManifest,
    UploadState,
    UploadWriter,
)
from runners.errors import DigestError
from runners.oci.digest import Digest

DEFAULT_UPLOAD_TTL = 3600.0


def _digest_from_parts(algorithm: str, encoded: str) -> Digest | None:
    try:
        return Digest.parse(f"{algorithm}:{encoded}")
    except DigestError:
        return None


def _walk_digests(base: Path, *, fanout: bool) -> Iterator[tuple[Digest, Path]]:
    """``(digest, path)`` of files named by digest under ``base/ALGO/[XX/]HEX``."""
    if not base.is_dir():
        return
    for algo_dir in base.iterdir():
        if not algo_dir.is_dir():
            continue
        groups = [g for g in algo_dir.iterdir() if g.is_dir()] if fanout else [algo_dir]
        for group in groups:
            for entry in group.iterdir():
                if is_temporary(entry.name):
                    continue
                digest = _digest_from_parts(algo_dir.name, entry.name)
                if digest is not None:
                    yield digest, entry


class FilesystemRegistryStorage:
    """A :class:`~pipeline.registry.storage.RegistryStorage` under one root directory."""

    def __init__(
        self,
        root: Path,
        *,
        clock: Clock | None = None,
        upload_ttl: float = DEFAULT_UPLOAD_TTL,
    ) -> None:
        self.root = root
        self.clock: Clock = clock or SystemClock()
        self.layout = Layout(root)
        for directory in (self.layout.blobs, self.layout.repositories, self.layout.uploads):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryServerError(
                    f"cannot create registry directory {directory}: {exc.strerror}; "
                    "check that --root points to a writable place"
                ) from exc
        self.uploads = UploadArea(self.layout, self.clock, upload_ttl)

    @staticmethod
    def token_key_path(root: Path) -> Path:
        """Where a registry rooted at ``root`` keeps its token signing key."""
        return Layout(root).token_key

    # -- repositories and blobs -------------------------------------------------------
    def repositories(self) -> list[str]:
        found: list[str] = []
        base = self.layout.repositories
        for dirpath, dirnames, _ in os.walk(base):
            if "_manifests" in dirnames or "_layers" in dirnames:
                found.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        return sorted(name for name in found if is_valid_name(name))

    def repository_exists(self, repository: str) -> bool:
        directory = self.layout.repository(repository)
        return (directory / "_manifests").is_dir() or (directory / "_layers").is_dir()

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        if not self.layout.layer_link(repository, digest).exists():
            return None
        try:
            return self.layout.blob(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open_blob(self, repository: str, digest: Digest) -> BlobReader | None:
        if not self.layout.layer_link(repository, digest).exists():
            return None
        try:
            fd = os.open(self.layout.blob(digest), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return BlobReader(fd, os.fstat(fd).st_size)

    def unlink_blob(self, repository: str, digest: Digest) -> bool:
        try:
            self.layout.layer_link(repository, digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        if self.blob_size(source, digest) is None:
            return False
        self._link(repository, digest)
        return True

    def _link(self, repository: str, digest: Digest) -> None:
        now = self.clock.now()
        touch(self.layout.blob(digest), now)
        link = self.layout.layer_link(repository, digest)
        link.parent.mkdir(parents=True, exist_ok=True)
        with open(link, "wb") as handle:
            handle.write(str(digest).encode())
        touch(link, now)

    def _store_blob_file(self, source: Path, digest: Digest) -> None:
        """Move verified, fsynced bytes at ``source`` to the blob's name."""
        target = self.layout.blob(digest)
        # Touching (rather than testing) the existing copy also tells a running GC it is
        # needed again; if GC removed it meanwhile the touch fails and ours takes its place.
        if touch(target, self.clock.now()):
            source.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        fsync_dir(target.parent)
        touch(target, self.clock.now())

    # -- uploads ----------------------------------------------------------------------
    def create_upload(self, repository: str) -> UploadState:
        return self.uploads.create(repository)

    def upload_state(self, repository: str, upload_id: str) -> UploadState:
        return self.uploads.state(repository, upload_id)

    def open_upload(self, repository: str, upload_id: str, start: int | None) -> UploadWriter:
        return self.uploads.open(repository, upload_id, start)

    def complete_upload(self, repository: str, upload_id: str, digest: Digest) -> int:
        path, size = self.uploads.verified(repository, upload_id, digest)
        try:
            self._store_blob_file(path, digest)
            self._link(repository, digest)
        finally:
            self.uploads.discard(upload_id)
        return size

    def cancel_upload(self, repository: str, upload_id: str) -> None:
        self.uploads.cancel(repository, upload_id)

    def sweep_uploads(self) -> int:
        return self.uploads.sweep()

    def free_space(self) -> int | None:
        return shutil.disk_usage(self.root).free

    # -- manifests, tags, referrers ---------------------------------------------------
    def put_manifest(
        self,
        repository: str,
        data: bytes,
        manifest: ParsedManifest,
        digest: Digest,
        tag: str | None,
    ) -> None:
        missing: list[dict[str, object]] = []
        for descriptor in manifest.required_blobs():
            size = self.blob_size(repository, descriptor.digest)
            if size is None:
                missing.append({"digest": str(descriptor.digest), "kind": "blob"})
            elif size != descriptor.size:
                raise DistributionError(
                    ErrorCode.MANIFEST_INVALID,
                    {
                        "reason": f"descriptor size {descriptor.size} does not match the "
                        f"stored blob's size {size}",
                        "digest": str(descriptor.digest),
                    },
                )
        for descriptor in manifest.manifests:
            if not self.layout.revision(repository, descriptor.digest).exists():
                missing.append({"digest": str(descriptor.digest), "kind": "manifest"})
        if missing:
            raise DistributionError(ErrorCode.MANIFEST_BLOB_UNKNOWN, {"missing": missing})

        now = self.clock.now()
        # Touch before writing: GC must see the referenced content as fresh from now on.
        for descriptor in manifest.required_blobs():
            touch(self.layout.blob(descriptor.digest), now)
            touch(self.layout.layer_link(repository, descriptor.digest), now)
        for descriptor in manifest.manifests:
            touch(self.layout.revision(repository, descriptor.digest), now)

        if not self.layout.blob(digest).exists():
            # written among the uploads, whose sweep removes it if we die before the rename
            temp = self.layout.uploads / f"manifest-{uuid.uuid4().hex}.tmp"
            try:
                with open(temp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                self._store_blob_file(temp, digest)
            finally:
                temp.unlink(missing_ok=True)
        self._link(repository, digest)
        revision = {
            "mediaType": manifest.media_type,
            "size": len(data),
            "subject": str(manifest.subject.digest) if manifest.subject else None,
        }
        write_atomic(
            self.layout.revision(repository, digest), json.dumps(revision).encode(), mtime=now
        )
        if manifest.subject is not None:
            descriptor = manifest.referrer_descriptor(digest, len(data))
            write_atomic(
                self.layout.referrer(repository, manifest.subject.digest, digest),
                json.dumps(descriptor.to_json()).encode(),
            )
        if tag is not None:
            write_atomic(self.layout.tags(repository) / tag, str(digest).encode(), mtime=now)

    def _resolve(self, repository: str, reference: str | Digest) -> Digest | None:
        if isinstance(reference, Digest):
            return reference
        if not is_valid_tag(reference):
            return None
        try:
            text = (self.layout.tags(repository) / reference).read_text().strip()
        except FileNotFoundError:
            return None
        return _digest_from_parts(*text.split(":", 1)) if ":" in text else None

    def _revision(self, repository: str, digest: Digest) -> dict[str, object] | None:
        try:
            raw = json.loads(self.layout.revision(repository, digest).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None

    def get_manifest(self, repository: str, reference: str | Digest) -> StoredManifest | None:
        digest = self._resolve(repository, reference)
        if digest is None:
            return None
        revision = self._revision(repository, digest)
        if revision is None:
            return None
        try:
            data = self.layout.blob(digest).read_bytes()
        except FileNotFoundError:
            return None
        return StoredManifest(digest, str(revision.get("mediaType")), data)

    def delete_manifest(self, repository: str, digest: Digest) -> bool:
        revision = self._revision(repository, digest)
        if revision is None:
            return False
        for tag in self.tags(repository) or []:
            if self._resolve(repository, tag) == digest:
                (self.layout.tags(repository) / tag).unlink(missing_ok=True)
        self._drop_revision(repository, digest, revision)
        return True

    def _drop_revision(self, repository: str, digest: Digest, revision: dict[str, object]) -> None:
        subject = revision.get("subject")
        if isinstance(subject, str) and ":" in subject:
            parsed = _digest_from_parts(*subject.split(":", 1))
            if parsed is not None:
                self.layout.referrer(repository, parsed, digest).unlink(missing_ok=True)
        self.layout.revision(repository, digest).unlink(missing_ok=True)

    def delete_tag(self, repository: str, tag: str) -> bool:
        if not is_valid_tag(tag):
            return False
        try:
            (self.layout.tags(repository) / tag).unlink()
        except FileNotFoundError:
            return False
        return True

    def tags(self, repository: str) -> list[str] | None:
        if not self.repository_exists(repository):
            return None
        directory = self.layout.tags(repository)
        if not directory.is_dir():
            return []
        return sorted(e.name for e in directory.iterdir() if not is_temporary(e.name))

    def referrers(self, repository: str, subject: Digest) -> list[Descriptor]:
        directory = self.layout.referrers(repository, subject)
        if not directory.is_dir():
            return []
        found: list[Descriptor] = []
        for entry in sorted(directory.iterdir()):
            if is_temporary(entry.name):
                continue
            try:
                descriptor = parse_descriptor(json.loads(entry.read_bytes()), entry.name)
            except (OSError, ValueError, DistributionError):
                continue
            if self.layout.revision(repository, descriptor.digest).exists():
                found.append(descriptor)
        return found

    # -- pins -------------------------------------------------------------------------
    def pin(self, repository: str, digest: Digest, reason: str) -> Pin:
        pin = Pin(repository, digest, reason, self.clock.now())
        write_atomic(self.layout.pin(repository, digest), json.dumps(pin.to_json()).encode())
        return pin

    def unpin(self, repository: str, digest: Digest) -> bool:
        try:
            self.layout.pin(repository, digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def list_pins(self) -> list[Pin]:
        pins: list[Pin] = []
        for digest, directory in _walk_digests(self.layout.pins, fanout=False):
            if not directory.is_dir():
                continue
            for entry in sorted(directory.iterdir()):
                if is_temporary(entry.name):
                    continue
                try:
                    raw = json.loads(entry.read_bytes())
                    pins.append(
                        Pin(
                            Layout.pin_repository(entry),
                            digest,
                            str(raw.get("reason", "")),
                            float(raw.get("created", 0.0)),
                        )
                    )
                except (OSError, ValueError, TypeError):
                    continue
        return sorted(pins, key=lambda p: (p.repository, str(p.digest)))

    # -- garbage collection -----------------------------------------------------------
    def inventory(self) -> Inventory:
        repositories = tuple(self._repository_record(name) for name in self.repositories())
        blobs: dict[Digest, BlobRecord] = {}
        for digest, path in _walk_digests(self.layout.blobs, fanout=True):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                blobs[digest] = BlobRecord(stat.st_size, stat.st_mtime)
        return Inventory(repositories, blobs, tuple(self.list_pins()))

    def _repository_record(self, name: str) -> RepositoryRecord:
        tags: dict[str, Digest] = {}
        for tag in self.tags(name) or []:
            digest = self._resolve(name, tag)
            if digest is not None:
                tags[tag] = digest
        manifests: dict[Digest, ManifestRecord] = {}
        for digest, path in _walk_digests(self.layout.revisions(name), fanout=False):
            touched = mtime(path)
            if touched is None:
                continue
            manifests[digest] = self._manifest_record(name, digest, touched)
        links: dict[Digest, float] = {}
        for digest, path in _walk_digests(self.layout.repository(name) / "_layers", fanout=False):
            touched = mtime(path)
            if touched is not None:
                links[digest] = touched
        return RepositoryRecord(name, tags, manifests, links)

    def _manifest_record(self, name: str, digest: Digest, touched: float) -> ManifestRecord:
        stored = self.get_manifest(name, digest)
        if stored is None:
            return ManifestRecord(digest, touched)
        try:
            parsed = parse_manifest(stored.data, stored.media_type, limit=None)
        except DistributionError:
            # stored content that no longer parses still holds on to nothing
            return ManifestRecord(digest, touched)
        blobs = [d.digest for d in parsed.required_blobs()]
        return ManifestRecord(
            digest,
            touched,
            blobs=frozenset(blobs),
            children=frozenset(d.digest for d in parsed.manifests),
            subject=parsed.subject.digest if parsed.subject else None,
        )

    def remove_manifest(self, repository: str, digest: Digest, cutoff: float) -> bool:
        touched = mtime(self.layout.revision(repository, digest))
        if touched is None or touched > cutoff:
            return False
        if any(self._resolve(repository, t) == digest for t in self.tags(repository) or []):
            return False
        revision = self._revision(repository, digest)
        self._drop_revision(repository, digest, revision or {})
        return True

    def remove_link(self, repository: str, digest: Digest, cutoff: float) -> bool:
        link = self.layout.layer_link(repository, digest)
        touched = mtime(link)
        if touched is None or touched > cutoff:
            return False
        link.unlink(missing_ok=True)
        return True

    def remove_blob(self, digest: Digest, cutoff: float) -> bool:
        path = self.layout.blob(digest)
        touched = mtime(path)
        if touched is None or touched > cutoff:
            return False
        path.unlink(missing_ok=True)
        return True
