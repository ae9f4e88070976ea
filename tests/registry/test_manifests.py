from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.manifests import MAX_MANIFEST_SIZE, parse_manifest
from tests.registry.support import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    image_manifest,
    index_manifest,
)

pytestmark = pytest.mark.unit


def _invalid(data: bytes, content_type: str | None = OCI_MANIFEST) -> DistributionError:
    with pytest.raises(DistributionError) as info:
        parse_manifest(data, content_type)
    return info.value


def test_oci_manifest_lists_its_blobs() -> None:
    data = image_manifest(b"config", [b"l1", b"l2"])
    parsed = parse_manifest(data, OCI_MANIFEST)
    assert parsed.media_type == OCI_MANIFEST
    assert not parsed.is_index
    assert [str(d.digest) for d in parsed.required_blobs()] == [
        descriptor(b"config", "x")["digest"],
        descriptor(b"l1", "x")["digest"],
        descriptor(b"l2", "x")["digest"],
    ]
    assert parsed.artifact_type == "application/vnd.oci.image.config.v1+json"


def test_docker_schema2_manifest_and_list() -> None:
    child = image_manifest(
        b"c", [b"l"], media_type=DOCKER_MANIFEST, config_type=DOCKER_CONFIG, layer_type=DOCKER_LAYER
    )
    assert parse_manifest(child, DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    parsed = parse_manifest(index_manifest([child], DOCKER_LIST), DOCKER_LIST)
    assert parsed.is_index
    assert len(parsed.manifests) == 1
    assert parsed.required_blobs() == ()


def test_media_type_from_body_when_content_type_is_generic() -> None:
    data = index_manifest([b"{}"])
    assert parse_manifest(data, "application/json").media_type == OCI_INDEX
    assert parse_manifest(data, None).media_type == OCI_INDEX


def test_oci_manifest_without_media_type_is_recognised_by_shape() -> None:
    document = json.loads(image_manifest(b"c", [b"l"]))
    del document["mediaType"]
    assert parse_manifest(json.dumps(document).encode(), None).media_type == OCI_MANIFEST


def test_content_type_and_body_must_agree() -> None:
    error = _invalid(image_manifest(b"c", [b"l"]), OCI_INDEX)
    assert error.code is ErrorCode.MANIFEST_INVALID
    assert "does not match" in str(error)


def test_unknown_media_type_is_unsupported_415() -> None:
    error = _invalid(image_manifest(b"c", [b"l"]), "application/vnd.example+json")
    assert (error.code, error.status) == (ErrorCode.UNSUPPORTED, 415)


def test_subject_and_artifact_type() -> None:
    subject = descriptor(b"target", OCI_MANIFEST)
    data = image_manifest(
        b"{}", [b"sig"], subject=subject, artifact_type="application/x.sig", annotations={"k": "v"}
    )
    parsed = parse_manifest(data, OCI_MANIFEST)
    assert parsed.subject is not None
    assert str(parsed.subject.digest) == subject["digest"]
    assert parsed.artifact_type == "application/x.sig"
    assert parsed.annotations == {"k": "v"}


def test_foreign_layers_are_not_required() -> None:
    document = json.loads(image_manifest(b"c", [b"l"]))
    document["layers"].append(
        {
            **descriptor(b"win", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            "urls": ["https://example.invalid/layer"],
        }
    )
    parsed = parse_manifest(json.dumps(document).encode(), OCI_MANIFEST)
    assert len(parsed.layers) == 2
    assert len(parsed.required_blobs()) == 2  # config + the first layer only


def _mutated(change: dict[str, Any]) -> bytes:
    document = json.loads(image_manifest(b"c", [b"l"]))
    document.update(change)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        _mutated({"schemaVersion": 1}),
        _mutated({"schemaVersion": True}),
        _mutated({"config": "sha256:abc"}),
        _mutated({"config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}}),
        _mutated({"config": {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": -1}}),
        _mutated({"layers": "none"}),
        _mutated({"layers": [{"digest": "sha256:" + "a" * 64, "size": 1}]}),
        _mutated({"annotations": {"k": 1}}),
        _mutated({"subject": {"mediaType": OCI_MANIFEST}}),
    ],
)
def test_malformed_manifests_are_manifest_invalid(data: bytes) -> None:
    error = _invalid(data)
    assert error.code is ErrorCode.MANIFEST_INVALID
    assert error.status == 400


def test_oversized_manifest_is_413_manifest_invalid() -> None:
    document = json.loads(image_manifest(b"c", [b"l"]))
    document["annotations"] = {"pad": "x" * MAX_MANIFEST_SIZE}
    error = _invalid(json.dumps(document).encode())
    assert (error.code, error.status) == (ErrorCode.MANIFEST_INVALID, 413)
    assert error.body()["errors"][0]["detail"]["limit"] == MAX_MANIFEST_SIZE
