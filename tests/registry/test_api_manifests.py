from __future__ import annotations

import json

import pytest

from pipeline.registry.api.app import create_registry_app
from pipeline.registry.config import RegistryConfig
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.registry.gc import apply_gc, plan_gc
from runners.oci.digest import Digest
from runners.oci.manifest import MAX_MANIFEST_SIZE
from tests.registry.conftest import TestClient
from tests.registry.support import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    error_codes,
    image_manifest,
    index_manifest,
    push_blob,
    push_image,
    sha,
)

pytestmark = pytest.mark.unit


def test_push_by_tag_and_pull_by_tag_and_digest(client: TestClient) -> None:
    digest, data = push_image(client, "apps/demo", "v1")
    assert digest == sha(data)  # the exact bytes, not a re-serialisation
    for reference in ("v1", digest):
        response = client.get(f"/v2/apps/demo/manifests/{reference}")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert response.headers["Docker-Content-Digest"] == digest
        assert response.headers["Content-Length"] == str(len(data))
        head = client.head(f"/v2/apps/demo/manifests/{reference}")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["Content-Length"] == str(len(data))
        assert head.headers["Content-Type"] == OCI_MANIFEST
        assert head.headers["Docker-Content-Digest"] == digest


def test_put_answers_location_and_digest(client: TestClient) -> None:
    push_blob(client, "app", b"{}")
    data = image_manifest(b"{}", [])
    response = client.put(
        "/v2/app/manifests/v1", content=data, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/app/manifests/{sha(data)}"
    assert response.headers["Docker-Content-Digest"] == sha(data)
    assert "OCI-Subject" not in response.headers


def test_docker_manifest_and_manifest_list_keep_their_media_types(client: TestClient) -> None:
    child_digest, child = push_image(
        client,
        "app",
        None,
        media_type=DOCKER_MANIFEST,
        config_type=DOCKER_CONFIG,
        layer_type=DOCKER_LAYER,
    )
    listing = index_manifest([child], DOCKER_LIST)
    response = client.put(
        "/v2/app/manifests/multi", content=listing, headers={"Content-Type": DOCKER_LIST}
    )
    assert response.status_code == 201
    assert client.get("/v2/app/manifests/multi").headers["Content-Type"] == DOCKER_LIST
    assert (
        client.get(f"/v2/app/manifests/{child_digest}").headers["Content-Type"] == DOCKER_MANIFEST
    )


def test_oci_index(client: TestClient) -> None:
    _, child = push_image(client, "app", None)
    index = index_manifest([child])
    response = client.put(
        "/v2/app/manifests/latest", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert response.status_code == 201
    assert client.get("/v2/app/manifests/latest").headers["Content-Type"] == OCI_INDEX


def test_index_with_a_missing_child_is_manifest_blob_unknown(client: TestClient) -> None:
    missing = image_manifest(b"{}", [b"never pushed"])
    response = client.put(
        "/v2/app/manifests/multi",
        content=index_manifest([missing]),
        headers={"Content-Type": OCI_INDEX},
    )
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert response.json()["errors"][0]["detail"]["missing"] == [
        {"digest": sha(missing), "kind": "manifest"}
    ]


def test_push_by_digest(client: TestClient) -> None:
    push_blob(client, "app", b"{}")
    data = image_manifest(b"{}", [])
    wrong = sha(b"something else")
    response = client.put(
        f"/v2/app/manifests/{wrong}", content=data, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.get(f"/v2/app/manifests/{sha(data)}").status_code == 404
    response = client.put(
        f"/v2/app/manifests/{sha(data)}", content=data, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201
    assert client.get(f"/v2/app/manifests/{sha(data)}").content == data
    assert client.get("/v2/app/tags/list").json()["tags"] == []


def test_missing_blob_is_manifest_blob_unknown(
    client: TestClient, storage: FilesystemRegistryStorage
) -> None:
    push_blob(client, "app", b"{}")
    data = image_manifest(b"{}", [b"absent layer"])
    response = client.put(
        "/v2/app/manifests/v1", content=data, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert client.get("/v2/app/manifests/v1").status_code == 404
    assert not storage.layout.blob(Digest.parse(sha(data))).exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        (b'{"schemaVersion": 1}', OCI_MANIFEST, 400, "MANIFEST_INVALID"),
        (b'{"schemaVersion": 2, "mediaType": "x/y"}', "x/y", 415, "UNSUPPORTED"),
    ],
)
def test_bad_manifests_are_refused(
    client: TestClient, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = client.put(
        "/v2/app/manifests/v1", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    assert error_codes(response) == [code]
    assert client.get("/v2/app/manifests/v1").status_code == 404


def test_oversized_manifest_is_413(client: TestClient) -> None:
    push_blob(client, "app", b"{}")
    document = json.loads(image_manifest(b"{}", []))
    document["annotations"] = {"pad": "x" * MAX_MANIFEST_SIZE}
    response = client.put(
        "/v2/app/manifests/big",
        content=json.dumps(document).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 413
    assert error_codes(response) == ["MANIFEST_INVALID"]
    assert client.get("/v2/app/manifests/big").status_code == 404


def test_a_larger_configured_limit_is_honoured_and_survives_gc(
    storage: FilesystemRegistryStorage,
) -> None:
    config = RegistryConfig(max_manifest_size=2 * MAX_MANIFEST_SIZE)
    with TestClient(create_registry_app(storage, config=config, sweep=False)) as client:
        config_digest = push_blob(client, "app", b"{}")
        document = json.loads(image_manifest(b"{}", []))
        document["annotations"] = {"pad": "x" * MAX_MANIFEST_SIZE}
        body = json.dumps(document).encode()
        response = client.put(
            "/v2/app/manifests/big", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert response.status_code == 201, response.text
        assert client.get("/v2/app/manifests/big").content == body
    # collection parses the stored manifest again: its config blob is still referenced
    storage.clock.advance(7200)
    apply_gc(storage, plan_gc(storage.inventory(), storage.clock.now(), grace=60))
    assert storage.blob_size("app", Digest.parse(config_digest)) == 2


def test_manifest_with_subject_answers_oci_subject(client: TestClient) -> None:
    subject_digest, subject = push_image(client, "app", "v1")
    push_blob(client, "app", b"{}")
    push_blob(client, "app", b"sbom")
    data = image_manifest(
        b"{}",
        [b"sbom"],
        subject=descriptor(subject, OCI_MANIFEST),
        artifact_type="application/spdx+json",
    )
    response = client.put(
        f"/v2/app/manifests/{sha(data)}", content=data, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201
    assert response.headers["OCI-Subject"] == subject_digest


def test_delete_tag_then_manifest(client: TestClient) -> None:
    digest, _ = push_image(client, "app", "v1")
    client.put(
        "/v2/app/manifests/v2",
        content=client.get("/v2/app/manifests/v1").content,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert client.delete("/v2/app/manifests/v1").status_code == 202
    assert client.get("/v2/app/manifests/v1").status_code == 404
    assert client.get(f"/v2/app/manifests/{digest}").status_code == 200
    assert client.delete(f"/v2/app/manifests/{digest}").status_code == 202
    gone = client.get(f"/v2/app/manifests/{digest}")
    assert gone.status_code == 404
    assert error_codes(gone) == ["MANIFEST_UNKNOWN"]
    assert client.get("/v2/app/tags/list").json()["tags"] == []  # v2 went with its manifest
    assert client.delete(f"/v2/app/manifests/{digest}").status_code == 404


@pytest.mark.parametrize("reference", ["nope", ".hidden", "a" * 129])
def test_unknown_or_invalid_tags_are_manifest_unknown(client: TestClient, reference: str) -> None:
    response = client.get(f"/v2/app/manifests/{reference}")
    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_UNKNOWN"]


def test_pushing_an_invalid_tag_is_manifest_invalid(client: TestClient) -> None:
    push_blob(client, "app", b"{}")
    response = client.put(
        "/v2/app/manifests/.bad",
        content=image_manifest(b"{}", []),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]


def test_manifest_digest_in_url_must_parse(client: TestClient) -> None:
    response = client.get("/v2/app/manifests/sha256:abc")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
