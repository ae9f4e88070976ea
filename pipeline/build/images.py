"""Base images: found in the local image store by reference, else pulled by the client.

The local store is the build cache's OCI layout; its tags are full references
(``docker.io/library/busybox:latest``). ``berth image import`` and ``berth image base``
put images there, a pull caches what it fetched there (by digest), and ``FROM`` looks
there first, so offline builds work.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.build.errors import BuildError
from runners.errors import ManifestError, OCIError, RegistryError, RegistryNotFound
from runners.oci import mediatypes
from runners.oci.layout import OCILayout
from runners.oci.manifest import (
    DEFAULT_PLATFORM,
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    parse_manifest,
)
from runners.oci.reference import Reference

# Docker's media types name the same bytes as OCI's; berth writes OCI manifests.
_LAYER_TYPES = {
    mediatypes.DOCKER_LAYER_GZIP: mediatypes.OCI_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": mediatypes.OCI_LAYER,
}


@dataclass(frozen=True)
class BaseImage:
    """A resolved base image: its manifest, parsed config document and layers."""

    reference: str
    manifest: ImageManifest
    config: dict[str, Any]

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return tuple(
            Descriptor(_LAYER_TYPES.get(d.media_type, d.media_type), d.digest, d.size)
            for d in self.manifest.layers
        )


Puller = Callable[[Reference, OCILayout, str], None]
"""Pulls a reference into the store under a tag (the registry client, in production)."""


def store_tag(ref: Reference) -> str:
    """The tag a reference has in the local store: its fully qualified form."""
    return str(ref)


class ImageResolver:
    """Resolves ``FROM`` references against the local store, then registries."""

    def __init__(
        self, store: OCILayout, puller: Puller | None = None, platform: Platform = DEFAULT_PLATFORM
    ) -> None:
        self.store = store
        self.puller = puller
        self.platform = platform

    def resolve(self, text: str) -> BaseImage:
        try:
            ref = Reference.parse(text)
        except OCIError as exc:
            raise BuildError(f"FROM {text}: {exc}") from exc
        local = self._local(ref)
        if local is not None:
            return local
        if self.puller is None:
            raise BuildError(
                f"base image {ref} is not in the local image store and pulling is off;"
                " add it with berth image import or berth image base"
            )
        try:
            self.puller(ref, self.store, store_tag(ref))
        except RegistryNotFound as exc:
            raise BuildError(
                f"base image {ref} not found on registry {ref.registry}: {exc}; check the"
                " name, or add it offline with berth image import"
            ) from exc
        except RegistryError as exc:
            raise BuildError(
                f"base image {ref}: registry {ref.registry} failed: {exc}; add it offline"
                " with berth image import FILE or berth image base busybox"
            ) from exc
        found = self._local(ref)
        if found is None:
            raise BuildError(f"base image {ref}: pulled, but not found in the local store")
        return found

    def _local(self, ref: Reference) -> BaseImage | None:
        descriptor: Descriptor | None = None
        if ref.digest is not None and self.store.has_blob(ref.digest):
            descriptor = Descriptor(mediatypes.OCI_MANIFEST, ref.digest, 0)
        else:
            wanted = store_tag(ref.with_digest(None) if ref.digest is None else ref)
            for entry in self.store.index().manifests:
                if entry.annotations.get("org.opencontainers.image.ref.name") == wanted:
                    descriptor = entry
                    break
        if descriptor is None:
            return None
        return self.load(descriptor.digest, str(ref))

    def load(self, digest: Any, name: str) -> BaseImage:
        try:
            manifest = parse_manifest(self.store.read_blob(digest, MAX_MANIFEST_SIZE))
            if isinstance(manifest, ImageIndex):
                entry = manifest.select(self.platform)
                manifest = parse_manifest(self.store.read_blob(entry.digest, MAX_MANIFEST_SIZE))
            if not isinstance(manifest, ImageManifest):
                raise BuildError(f"base image {name}: nested index; not supported")
            config = json.loads(self.store.read_blob(manifest.config.digest, MAX_MANIFEST_SIZE))
        except (OCIError, ManifestError, ValueError) as exc:
            raise BuildError(f"base image {name}: damaged in the local store: {exc}") from exc
        for layer in manifest.layers:
            if not self.store.has_blob(layer.digest):
                raise BuildError(
                    f"base image {name}: layer {layer.digest} missing from the local store;"
                    " import or pull the image again"
                )
        return BaseImage(name, manifest, config)
