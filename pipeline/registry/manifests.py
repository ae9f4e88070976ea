"""Validation of pushed manifests: what a manifest is, and which blobs it needs.

:func:`parse_manifest` is pure: it takes the exact bytes a client sent and the request's
``Content-Type`` and returns a :class:`ParsedManifest` (its media type, the blobs and
manifests it references, its ``subject`` and artifact type) or raises the spec's
``MANIFEST_INVALID`` / ``UNSUPPORTED``. Whether the referenced content exists is the
storage's question, asked afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.registry.errors import DistributionError, ErrorCode
from runners.errors import DigestError
from runners.oci import mediatypes
from runners.oci.digest import Digest
from runners.oci.manifest import MAX_MANIFEST_SIZE

# The spec asks registries to accept manifests of at least 4 MiB (the default limit, the
# client's too); larger ones are refused with 413 and MANIFEST_INVALID (see
# ``manifest_too_large``).

# Layers that live outside the registry by design: a manifest may reference them without
# the registry holding them.
FOREIGN_LAYERS = frozenset(
    {
        mediatypes.DOCKER_FOREIGN_LAYER,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

# Content types that say nothing about the manifest; the body's ``mediaType`` decides.
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream"})


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest says about the content it points to."""

    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data


@dataclass(frozen=True)
class ParsedManifest:
    """A validated manifest or index and the content it references."""

    media_type: str
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEXES

    def required_blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers the repository must hold (foreign layers excluded)."""
        found = [self.config] if self.config is not None else []
        found += [d for d in self.layers if d.media_type not in FOREIGN_LAYERS and not d.urls]
        return tuple(found)

    def referrer_descriptor(self, digest: Digest, size: int) -> Descriptor:
        """How this manifest is listed by the referrers API of its subject."""
        return Descriptor(
            media_type=self.media_type,
            digest=digest,
            size=size,
            artifact_type=self.artifact_type,
            annotations=dict(self.annotations),
        )


def manifest_too_large(limit: int = MAX_MANIFEST_SIZE) -> DistributionError:
    """The error for a manifest over the size limit: 413 with ``MANIFEST_INVALID``."""
    return DistributionError(
        ErrorCode.MANIFEST_INVALID,
        {"reason": f"manifest is larger than the {limit} byte limit", "limit": limit},
        status=413,
        message=f"manifest too large (more than {limit} bytes)",
    )


def _invalid(reason: str) -> DistributionError:
    return DistributionError(ErrorCode.MANIFEST_INVALID, {"reason": reason})


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{where}: must be an object of strings")
    return dict(value)


def parse_descriptor(value: Any, where: str) -> Descriptor:
    """Validate one descriptor object found at ``where`` in a manifest."""
    if not isinstance(value, dict):
        raise _invalid(f"{where}: must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType: missing or not a string")
    raw_digest = value.get("digest")
    if not isinstance(raw_digest, str):
        raise _invalid(f"{where}.digest: missing or not a string")
    try:
        digest = Digest.parse(raw_digest)
    except DigestError as exc:
        raise _invalid(f"{where}.digest: {exc}") from exc
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size: must be a non-negative integer")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}.artifactType: must be a string")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}.urls: must be a list of strings")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=artifact_type,
        annotations=_string_map(value.get("annotations"), f"{where}.annotations"),
        urls=tuple(urls),
    )


def _descriptor_list(document: dict[str, Any], key: str) -> tuple[Descriptor, ...]:
    items = document.get(key)
    if not isinstance(items, list):
        raise _invalid(f"{key}: missing or not a list")
    return tuple(parse_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items))


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    header = (content_type or "").split(";", 1)[0].strip().lower()
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType: must be a string")
    if header in mediatypes.MANIFESTS:
        if declared is not None and declared != header:
            raise _invalid(
                f"mediaType {declared!r} in the body does not match Content-Type {header!r}"
            )
        return header
    if header not in _GENERIC_TYPES:
        raise DistributionError(
            ErrorCode.UNSUPPORTED,
            {"reason": f"manifest media type {header!r} is not supported"},
            status=415,
        )
    if declared in mediatypes.MANIFESTS:
        return declared
    if declared is not None:
        raise DistributionError(
            ErrorCode.UNSUPPORTED,
            {"reason": f"manifest media type {declared!r} is not supported"},
            status=415,
        )
    # An OCI manifest may omit mediaType; its shape then says what it is.
    if "manifests" in document:
        return mediatypes.OCI_INDEX
    if "config" in document:
        return mediatypes.OCI_MANIFEST
    raise _invalid("cannot tell the manifest's media type: set Content-Type or mediaType")


def parse_manifest(
    data: bytes, content_type: str | None, limit: int | None = MAX_MANIFEST_SIZE
) -> ParsedManifest:
    """Validate manifest bytes as sent by a client (see the module docstring).

    ``limit`` is the registry's configured size limit; None for a manifest stored
    earlier (garbage collection parses those again, and must not take one allowed then
    for one that references nothing).
    """
    if limit is not None and len(data) > limit:
        raise manifest_too_large(limit)
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _invalid("a manifest must be a JSON object")
    media_type = _media_type(document, content_type)
    if document.get("schemaVersion") != 2 or isinstance(document.get("schemaVersion"), bool):
        raise _invalid(f"schemaVersion must be 2 (got {document.get('schemaVersion')!r})")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType: must be a string")
    subject = None
    if document.get("subject") is not None:
        subject = parse_descriptor(document["subject"], "subject")
    annotations = _string_map(document.get("annotations"), "annotations")
    if media_type in mediatypes.INDEXES:
        return ParsedManifest(
            media_type=media_type,
            manifests=_descriptor_list(document, "manifests"),
            subject=subject,
            artifact_type=artifact_type,
            annotations=annotations,
        )
    config = parse_descriptor(document.get("config"), "config")
    return ParsedManifest(
        media_type=media_type,
        config=config,
        layers=_descriptor_list(document, "layers"),
        subject=subject,
        # The referrers API lists an image manifest without artifactType by its config type.
        artifact_type=artifact_type or config.media_type,
        annotations=annotations,
    )
