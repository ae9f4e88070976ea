"""The image configuration blob: platform, run defaults and the layers' diff ids.

Only the fields berth acts on are modelled; the exact bytes are kept in ``raw`` so the
blob can be re-pushed unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runners.errors import DigestError, ManifestError
from runners.oci.digest import Digest
from runners.oci.manifest import MAX_MANIFEST_SIZE, Platform

# A config holds history and environment; 4 MiB is plenty and bounds what a client buffers.
MAX_CONFIG_SIZE = MAX_MANIFEST_SIZE


@dataclass(frozen=True)
class RunConfig:
    """The ``config`` section: how a container of the image starts by default."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    stop_signal: str = ""


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration (``application/vnd.oci.image.config.v1+json``)."""

    platform: Platform
    diff_ids: tuple[Digest, ...]
    run: RunConfig
    raw: bytes = field(repr=False)
    digest: Digest
    created: str | None = None
    author: str | None = None
    history_length: int = 0


def parse_config(data: bytes) -> ImageConfig:
    """Parse an image config; raise :class:`ManifestError` naming the bad field."""
    if len(data) > MAX_CONFIG_SIZE:
        raise ManifestError(f"config is {len(data)} bytes; the limit is {MAX_CONFIG_SIZE} bytes")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"config: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestError("config: expected a JSON object")
    os_name = _string(doc, "os", "config", required=True)
    arch = _string(doc, "architecture", "config", required=True)
    variant = _string(doc, "variant", "config") or None
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict):
        raise ManifestError("config: rootfs: missing or not an object")
    if rootfs.get("type") != "layers":
        raise ManifestError(f"config: rootfs.type: must be 'layers' (got {rootfs.get('type')!r})")
    raw_ids = rootfs.get("diff_ids")
    if not isinstance(raw_ids, list):
        raise ManifestError("config: rootfs.diff_ids: missing or not a list")
    diff_ids = []
    for i, text in enumerate(raw_ids):
        try:
            diff_ids.append(Digest.parse(text if isinstance(text, str) else repr(text)))
        except DigestError as exc:
            raise ManifestError(f"config: rootfs.diff_ids[{i}]: {exc}") from exc
    history = doc.get("history") or []
    if not isinstance(history, list):
        raise ManifestError("config: history: must be a list")
    return ImageConfig(
        platform=Platform(os_name, arch, variant),
        diff_ids=tuple(diff_ids),
        run=_run_config(doc.get("config") or {}),
        raw=data,
        digest=Digest.of(data),
        created=_string(doc, "created", "config") or None,
        author=_string(doc, "author", "config") or None,
        history_length=len(history),
    )


def _run_config(value: Any) -> RunConfig:
    if not isinstance(value, dict):
        raise ManifestError("config: config: must be an object")
    ports = value.get("ExposedPorts") or {}
    if not isinstance(ports, dict):
        raise ManifestError("config: config.ExposedPorts: must be an object")
    labels = value.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ManifestError("config: config.Labels: must map strings to strings")
    return RunConfig(
        entrypoint=_strings(value, "Entrypoint"),
        cmd=_strings(value, "Cmd"),
        env=_strings(value, "Env"),
        working_dir=_string(value, "WorkingDir", "config.config"),
        user=_string(value, "User", "config.config"),
        exposed_ports=tuple(sorted(ports)),
        labels=dict(labels),
        stop_signal=_string(value, "StopSignal", "config.config"),
    )


def _string(doc: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = doc.get(key)
    if value is None:
        if required:
            raise ManifestError(f"{where}: {key}: missing")
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"{where}: {key}: must be a string (got {value!r})")
    return value


def _strings(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"config: config.{key}: must be a list of strings")
    return tuple(value)
