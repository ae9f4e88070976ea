"""Image manifests, image indexes and descriptors of the OCI image spec (and Docker v2.2).

Parsing validates every field a client relies on and names the field that is wrong
(``manifest: layers[1].digest: missing``). A parsed document keeps the exact bytes it
came from and their digest: re-serialising JSON would change the digest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runners.errors import DigestError, ManifestError
from runners.oci import mediatypes
from runners.oci.digest import Digest

# The distribution spec lets registries refuse manifests above 4 MiB; berth refuses to
# parse them too, so a hostile registry cannot make a client buffer unbounded JSON.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Platform:
    """The ``os/architecture[/variant]`` an image manifest runs on."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/amd64`` or ``linux/arm64/v8``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ManifestError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, other: Platform) -> bool:
        """True when ``other`` satisfies this wanted platform (variant only if asked for)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant is None or self.variant == other.variant

    def to_json(self) -> dict[str, str]:
        data = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        return data

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


DEFAULT_PLATFORM = Platform("linux", "amd64")


@dataclass(frozen=True)
class Descriptor:
    """A typed, sized, content-addressed pointer to a blob or manifest."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            data["urls"] = list(self.urls)
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.platform is not None:
            data["platform"] = self.platform.to_json()
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        return data


@dataclass(frozen=True)
class ImageManifest:
    """An image manifest: one config blob and an ordered list of layers."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    raw: bytes = field(repr=False)
    digest: Digest
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    subject: Descriptor | None = None

    @property
    def descriptor(self) -> Descriptor:
        """The descriptor that points at this manifest."""
        return Descriptor(self.media_type, self.digest, len(self.raw))

    def blobs(self) -> tuple[Descriptor, ...]:
        """The config first, then the layers: everything a registry must hold for it."""
        return (self.config, *self.layers)


@dataclass(frozen=True)
class ImageIndex:
    """An image index (or Docker manifest list): one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    raw: bytes = field(repr=False)
    digest: Digest
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))

    def select(self, platform: Platform) -> Descriptor:
        """The image manifest for ``platform``; raise naming the platforms on offer."""
        for entry in self.manifests:
            if (
                entry.media_type in mediatypes.IMAGE_MANIFESTS
                and entry.platform
                and platform.matches(entry.platform)
            ):
                return entry
        offered = sorted({str(m.platform) for m in self.manifests if m.platform})
        raise ManifestError(
            f"index {self.digest} has no image for {platform}; it offers: "
            f"{', '.join(offered) or 'no platforms'} (choose one with --platform)"
        )


Manifest = ImageManifest | ImageIndex


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Parse an image manifest or index; ``media_type`` is the Content-Type it came with.

    The ``mediaType`` in the document wins over the header; when neither is there the
    shape decides (OCI made the field optional).
    """
    doc = _load_json(data, "manifest")
    kind = _document_type(doc, _strip_parameters(media_type))
    digest = Digest.of(data)
    what = "index" if kind in mediatypes.INDEXES else "manifest"
    if kind in mediatypes.INDEXES:
        entries = _list(doc, "manifests", what)
        return ImageIndex(
            media_type=kind,
            manifests=tuple(
                _descriptor(entry, f"manifests[{i}]", what) for i, entry in enumerate(entries)
            ),
            raw=data,
            digest=digest,
            annotations=_annotations(doc, "annotations", what),
        )
    config = doc.get("config")
    if config is None:
        raise ManifestError(f"{what}: config: missing")
    layers = _list(doc, "layers", what)
    subject = doc.get("subject")
    return ImageManifest(
        media_type=kind,
        config=_descriptor(config, "config", what),
        layers=tuple(_descriptor(layer, f"layers[{i}]", what) for i, layer in enumerate(layers)),
        raw=data,
        digest=digest,
        annotations=_annotations(doc, "annotations", what),
        subject=_descriptor(subject, "subject", what) if subject is not None else None,
    )


def parse_index(data: bytes, media_type: str | None = None) -> ImageIndex:
    """Parse a document that must be an index (an OCI layout's ``index.json``)."""
    parsed = parse_manifest(data, media_type or mediatypes.OCI_INDEX)
    if not isinstance(parsed, ImageIndex):
        raise ManifestError(f"expected an image index, got {parsed.media_type}")
    return parsed


def build_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor],
    *,
    media_type: str = mediatypes.OCI_MANIFEST,
    annotations: Mapping[str, str] | None = None,
) -> ImageManifest:
    """A new image manifest serialised canonically (sorted keys, no spaces)."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    parsed = parse_manifest(canonical_json(doc))
    assert isinstance(parsed, ImageManifest)
    return parsed


def build_index(
    manifests: Sequence[Descriptor],
    *,
    media_type: str = mediatypes.OCI_INDEX,
    annotations: Mapping[str, str] | None = None,
) -> ImageIndex:
    """A new image index serialised canonically."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return parse_index(canonical_json(doc), media_type)


def canonical_json(doc: Any) -> bytes:
    """Deterministic JSON bytes: the same document always gets the same digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestError(
            f"{what} is {len(data)} bytes; the limit is {MAX_MANIFEST_SIZE} bytes (4 MiB)"
        )
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{what}: not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{what}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(doc, dict):
        raise ManifestError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _strip_parameters(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip() or None


def _document_type(doc: Mapping[str, Any], header_type: str | None) -> str:
    version = doc.get("schemaVersion")
    if isinstance(version, bool) or version != 2:
        raise ManifestError(
            f"manifest: schemaVersion: must be 2 (got {version!r}); "
            "Docker schema 1 manifests are not supported"
        )
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError(f"manifest: mediaType: must be a string (got {declared!r})")
    kind = declared or header_type
    if kind is None or (declared is None and kind not in mediatypes.MANIFESTS):
        # OCI made mediaType optional; the shape of the document says what it is.
        if "manifests" in doc:
            kind = mediatypes.OCI_INDEX
        elif "config" in doc or "layers" in doc:
            kind = mediatypes.OCI_MANIFEST
        else:
            raise ManifestError("manifest: mediaType: missing, and no manifests or layers")
    if kind not in mediatypes.MANIFESTS:
        raise ManifestError(
            f"manifest: mediaType: unsupported {kind!r}; berth reads "
            + ", ".join(sorted(mediatypes.MANIFESTS))
        )
    return kind


def _list(doc: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        raise ManifestError(f"{what}: {key}: missing")
    if not isinstance(value, list):
        raise ManifestError(f"{what}: {key}: must be a list (got {type(value).__name__})")
    return value


def _annotations(doc: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestError(f"{where}: {key}: must map strings to strings")
    return dict(value)


def _descriptor(value: Any, path: str, what: str) -> Descriptor:
    where = f"{what}: {path}"
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: must be an object (got {type(value).__name__})")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where}.mediaType: missing or not a string")
    digest_text = value.get("digest")
    if not isinstance(digest_text, str):
        raise ManifestError(f"{where}.digest: missing or not a string")
    try:
        digest = Digest.parse(digest_text)
    except DigestError as exc:
        raise ManifestError(f"{where}.digest: {exc}") from exc
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"{where}.size: must be a non-negative integer (got {size!r})")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ManifestError(f"{where}.urls: must be a list of strings")
    platform = value.get("platform")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestError(f"{where}.artifactType: must be a string")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=_annotations(value, "annotations", where),
        platform=_platform(platform, f"{where}.platform") if platform is not None else None,
        urls=tuple(urls),
        artifact_type=artifact_type,
    )


def _platform(value: Any, where: str) -> Platform:
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: must be an object")
    os_name, arch, variant = value.get("os"), value.get("architecture"), value.get("variant")
    if not isinstance(os_name, str) or not os_name:
        raise ManifestError(f"{where}.os: missing or not a string")
    if not isinstance(arch, str) or not arch:
        raise ManifestError(f"{where}.architecture: missing or not a string")
    if variant is not None and not isinstance(variant, str):
        raise ManifestError(f"{where}.variant: must be a string")
    return Platform(os_name, arch, variant or None)
