"""The host's images: pulled blobs, unpacked layers, pins, and garbage collection.

Blobs live in an OCI layout (``<data>/images``); which references pulled which image
manifest is kept beside it in ``<data>/images.json`` (the layout's own tags hold one
name per manifest, an agent needs several). Layers are unpacked once into the shared
:class:`~runners.runtime.layers.LayerStore` with the host's id shift, keyed by diff id so
every image with the same layer content shares one directory.

A *pinned* digest is never collected; :meth:`HostImages.gc` removes every other image
no instance uses, and the blobs and layer directories only such images referenced.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from runners.agent.errors import BadSpec, NotFound
from runners.errors import OCIError, RegistryNotFound
from runners.oci.client import RegistryClient
from runners.oci.digest import Digest
from runners.oci.imageconfig import ImageConfig, parse_config
from runners.oci.layout import OCILayout
from runners.oci.manifest import Descriptor, ImageManifest, parse_manifest
from runners.oci.reference import Reference
from runners.runtime.layers import LayerStore


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to run: its config and its unpacked layer dirs, topmost first."""

    digest: Digest
    config: ImageConfig
    lower_dirs: tuple[Path, ...]
    passwd: str | None
    group: str | None


class _Layout(OCILayout):
    """The blob store; manifests are indexed by :class:`HostImages`, not ``index.json``."""

    def __init__(self, root: Path, on_manifest: Any) -> None:
        super().__init__(root)
        self._on_manifest = on_manifest

    def add_manifest(self, descriptor: Descriptor, tag: str | None) -> None:
        if not self.has_blob(descriptor.digest):
            raise OCIError(f"{self.root}: manifest blob {descriptor.digest} is not stored")
        self._on_manifest(descriptor)


class HostImages:
    """Images, layers and pins of one host (see the module docstring)."""

    def __init__(self, data: Path, layers: LayerStore, client: RegistryClient) -> None:
        OCILayout.create(data / "images")
        self.layout = _Layout(data / "images", self._remember)
        self.index_path = data / "images.json"
        self.pins_path = data / "pins.json"
        self.layers = layers
        self.client = client
        self._lock = threading.RLock()
        self._pull_locks: dict[str, threading.Lock] = {}
        self._prepared: dict[Digest, PreparedImage] = {}
        self._pending_refs: dict[int, str] = {}

    # -- pulling -------------------------------------------------------------------------

    def ensure(self, ref: Reference, digest: Digest | None) -> Digest:
        """The manifest digest of ``ref`` on this host, pulling it when it is not here.

        With ``digest`` the image is pulled by digest, and nothing is pulled when that
        digest is already present; without, the tag is resolved at the registry.
        """
        if digest is not None and self.has(digest):
            self._add_reference(digest, str(ref.with_digest(None)))
            return digest
        return self.pull(ref if digest is None else ref.with_digest(digest))

    def pull(self, ref: Reference) -> Digest:
        """Pull ``ref`` into the store (blobs only once) and return its manifest digest."""
        key = str(ref)
        with self._lock:
            lock = self._pull_locks.setdefault(key, threading.Lock())
        with lock:
            self._pending_refs[threading.get_ident()] = str(ref.with_digest(None))
            try:
                result = self.client.pull_image(ref, self.layout)
            except RegistryNotFound as exc:
                raise NotFound(f"image {ref}: not found in its registry ({exc})") from exc
            finally:
                self._pending_refs.pop(threading.get_ident(), None)
        if ref.digest is not None and result.digest != ref.digest:
            raise BadSpec(f"image {ref}: the registry served {result.digest}")
        return result.digest

    def has(self, digest: Digest) -> bool:
        return str(digest) in self._index() and self.layout.has_blob(digest)

    # -- preparing -----------------------------------------------------------------------

    def prepare(self, digest: Digest) -> PreparedImage:
        """Config and unpacked layers of a pulled image; layers are unpacked on first use."""
        cached = self._prepared.get(digest)
        if cached is not None:
            return cached
        manifest = self._manifest(digest)
        config = parse_config(self.layout.read_blob(manifest.config.digest))
        if len(config.diff_ids) != len(manifest.layers):
            raise OCIError(
                f"image {digest}: {len(manifest.layers)} layers but {len(config.diff_ids)}"
                " diff ids in its config; the image is corrupt"
            )
        dirs = [
            self.layers.ensure_layer(diff_id, partial(self.layout.open_blob, blob.digest))
            for diff_id, blob in zip(config.diff_ids, manifest.layers, strict=True)
        ]
        lowers = tuple(reversed(dirs))  # overlay wants the topmost layer first
        prepared = PreparedImage(
            digest=digest,
            config=config,
            lower_dirs=lowers,
            passwd=_image_file(lowers, "etc/passwd"),
            group=_image_file(lowers, "etc/group"),
        )
        self._prepared[digest] = prepared
        return prepared

    # -- listing, pins, gc ---------------------------------------------------------------

    def listing(self, in_use: set[str]) -> list[dict[str, Any]]:
        pins = self.pins()
        found = []
        for digest_text, entry in sorted(self._index().items()):
            digest = Digest.parse(digest_text)
            size = 0
            with contextlib.suppress(OCIError, NotFound):
                manifest = self._manifest(digest)
                size = sum(blob.size for blob in manifest.blobs())
            found.append(
                {
                    "digest": digest_text,
                    "references": entry.get("references", []),
                    "pulled_at": entry.get("pulled_at"),
                    "size": size,
                    "pinned": digest_text in pins,
                    "in_use": digest_text in in_use,
                }
            )
        return found

    def pins(self) -> set[str]:
        try:
            return set(json.loads(self.pins_path.read_text()))
        except FileNotFoundError:
            return set()

    def pin(self, digest: Digest) -> None:
        with self._lock:
            pins = self.pins() | {str(digest)}
            _write_json(self.pins_path, sorted(pins))

    def unpin(self, digest: Digest) -> None:
        with self._lock:
            pins = self.pins()
            if str(digest) not in pins:
                raise NotFound(f"image {digest} is not pinned on this host")
            _write_json(self.pins_path, sorted(pins - {str(digest)}))

    def gc(self, in_use: set[str]) -> dict[str, list[str]]:
        """Remove images neither pinned nor in ``in_use``, and blobs/layers only they used."""
        with self._lock:
            index = self._index()
            keep = self.pins() | in_use
            removed_images = sorted(d for d in index if d not in keep)
            for digest in removed_images:
                del index[digest]
                self._prepared.pop(Digest.parse(digest), None)
            _write_json(self.index_path, index)
            wanted_blobs: set[Digest] = set()
            wanted_layers: set[Digest] = set()
            for digest_text in index:
                kept = Digest.parse(digest_text)
                wanted_blobs.add(kept)
                with contextlib.suppress(OCIError, NotFound):
                    manifest = self._manifest(kept)
                    wanted_blobs.update(blob.digest for blob in manifest.blobs())
                    config = parse_config(self.layout.read_blob(manifest.config.digest))
                    wanted_layers.update(config.diff_ids)
            removed_blobs = []
            blob_dir = self.layout.root / "blobs" / "sha256"
            for path in sorted(blob_dir.iterdir()) if blob_dir.is_dir() else []:
                if path.name.startswith("."):
                    continue
                blob = Digest.parse(f"sha256:{path.name}")
                if blob not in wanted_blobs:
                    path.unlink()
                    removed_blobs.append(str(blob))
            removed_layers = []
            for layer in self.layers.digests():
                if layer not in wanted_layers and self.layers.remove(layer):
                    removed_layers.append(str(layer))
        return {"images": removed_images, "blobs": removed_blobs, "layers": removed_layers}

    # -- internals -----------------------------------------------------------------------

    def _manifest(self, digest: Digest) -> ImageManifest:
        if not self.layout.has_blob(digest):
            raise NotFound(f"image {digest} is not on this host; pull it first")
        manifest = parse_manifest(self.layout.read_blob(digest))
        if not isinstance(manifest, ImageManifest):
            raise OCIError(f"image {digest}: an index, not an image manifest")
        return manifest

    def _index(self) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = json.loads(self.index_path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _remember(self, descriptor: Descriptor) -> None:
        reference = self._pending_refs.get(threading.get_ident())
        self._add_reference(descriptor.digest, reference)

    def _add_reference(self, digest: Digest, reference: str | None) -> None:
        with self._lock:
            index = self._index()
            entry = index.get(str(digest))
            if entry is not None and (not reference or reference in entry["references"]):
                return  # known already: every start used to rewrite the index file
            if entry is None:
                entry = index[str(digest)] = {"references": [], "pulled_at": time.time()}
            if reference:
                entry["references"] = sorted([*entry["references"], reference])
            _write_json(self.index_path, index)


def _image_file(lowers: tuple[Path, ...], relative: str) -> str | None:
    # the topmost layer that has the file wins; a whiteout hides it in lower ones, which
    # for /etc/passwd only matters to images that delete it (then USER must be numeric)
    for layer in lowers:
        path = layer / relative
        if path.is_symlink():
            return None
        if path.is_file():
            with contextlib.suppress(OSError):
                return path.read_text(errors="replace")
    return None


def _write_json(path: Path, data: Any) -> None:
    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
