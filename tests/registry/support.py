"""Helpers for registry tests: push blobs and manifests through the HTTP API."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def push_blob(
    client: httpx.Client, repo: str, data: bytes, headers: dict[str, str] | None = None
) -> str:
    digest = sha(data)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data, headers=headers
    )
    assert response.status_code == 201, response.text
    return digest


def descriptor(data: bytes, media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data)}


def image_manifest(
    config: bytes,
    layers: list[bytes],
    *,
    media_type: str = OCI_MANIFEST,
    config_type: str = OCI_CONFIG,
    layer_type: str = OCI_LAYER,
    subject: dict[str, Any] | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config, config_type),
        "layers": [descriptor(layer, layer_type) for layer in layers],
    }
    if subject is not None:
        document["subject"] = subject
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    if annotations:
        document["annotations"] = annotations
    return json.dumps(document, indent=1).encode()


def index_manifest(children: list[bytes], media_type: str = OCI_INDEX) -> bytes:
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {**descriptor(child, child_type), "platform": {"os": "linux", "architecture": "amd64"}}
            for child in children
        ],
    }
    return json.dumps(document).encode()


def push_image(
    client: httpx.Client,
    repo: str,
    tag: str | None,
    *,
    layers: list[bytes] | None = None,
    config: bytes | None = None,
    headers: dict[str, str] | None = None,
    **manifest_options: Any,
) -> tuple[str, bytes]:
    """Push config, layers and a manifest; return the manifest's digest and bytes."""
    config = config if config is not None else json.dumps({"repo": repo, "tag": tag}).encode()
    layers = layers if layers is not None else [f"layer of {repo}:{tag}".encode()]
    for blob in [config, *layers]:
        push_blob(client, repo, blob, headers)
    manifest = image_manifest(config, layers, **manifest_options)
    media_type = manifest_options.get("media_type", OCI_MANIFEST)
    reference = tag or sha(manifest)
    response = client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=manifest,
        headers={"Content-Type": media_type, **(headers or {})},
    )
    assert response.status_code == 201, response.text
    return response.headers["Docker-Content-Digest"], manifest


def error_codes(response: httpx.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]
