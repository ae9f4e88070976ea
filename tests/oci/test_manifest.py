"""Manifest, index and config parsing: good documents, and bad ones named by field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runners.errors import ManifestError
from runners.oci import mediatypes
from runners.oci.digest import Digest
from runners.oci.imageconfig import parse_config
from runners.oci.manifest import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    build_index,
    build_manifest,
    parse_manifest,
)

pytestmark = pytest.mark.unit

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def manifest_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [
            {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": D2, "size": 20},
            {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": D3, "size": 30},
        ],
    }
    doc.update(changes)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_parses_an_image_manifest_and_keeps_its_exact_bytes() -> None:
    # Spaces and key order are kept: the digest is of the bytes, not of the JSON.
    data = json.dumps(manifest_doc(), indent=3).encode()
    manifest = parse_manifest(data)
    assert isinstance(manifest, ImageManifest)
    assert manifest.raw == data
    assert manifest.digest == Digest.of(data)
    assert manifest.config.digest == Digest.parse(D1)
    assert [layer.size for layer in manifest.layers] == [20, 30]
    assert manifest.descriptor == Descriptor(mediatypes.OCI_MANIFEST, Digest.of(data), len(data))
    assert [b.digest for b in manifest.blobs()] == [Digest.parse(d) for d in (D1, D2, D3)]


def test_docker_schema2_manifests_are_read() -> None:
    doc = manifest_doc(mediaType=mediatypes.DOCKER_MANIFEST)
    manifest = parse_manifest(encode(doc))
    assert manifest.media_type == mediatypes.DOCKER_MANIFEST


def test_media_type_comes_from_the_header_or_the_shape_when_the_body_has_none() -> None:
    doc = manifest_doc()
    del doc["mediaType"]
    assert parse_manifest(encode(doc)).media_type == mediatypes.OCI_MANIFEST
    header = f"{mediatypes.DOCKER_MANIFEST}; charset=utf-8"
    assert parse_manifest(encode(doc), header).media_type == mediatypes.DOCKER_MANIFEST
    index = {"schemaVersion": 2, "manifests": []}
    assert isinstance(parse_manifest(encode(index)), ImageIndex)


def test_index_selects_the_platform() -> None:
    amd64 = Descriptor(
        mediatypes.OCI_MANIFEST, Digest.parse(D1), 5, platform=Platform("linux", "amd64")
    )
    arm = Descriptor(
        mediatypes.OCI_MANIFEST, Digest.parse(D2), 5, platform=Platform("linux", "arm64", "v8")
    )
    index = build_index([arm, amd64])
    parsed = parse_manifest(index.raw)
    assert isinstance(parsed, ImageIndex)
    assert parsed.select(Platform("linux", "amd64")).digest == Digest.parse(D1)
    assert parsed.select(Platform.parse("linux/arm64")).digest == Digest.parse(D2)
    assert parsed.select(Platform.parse("linux/arm64/v8")).digest == Digest.parse(D2)
    with pytest.raises(
        ManifestError, match=r"no image for linux/s390x; it offers: linux/amd64, linux/arm64/v8"
    ):
        parsed.select(Platform("linux", "s390x"))


def test_build_manifest_is_canonical_and_parses_back() -> None:
    config = Descriptor(mediatypes.OCI_CONFIG, Digest.parse(D1), 10)
    layer = Descriptor(mediatypes.OCI_LAYER, Digest.parse(D2), 20, annotations={"a": "b"})
    first = build_manifest(config, [layer])
    second = build_manifest(config, [layer])
    assert first.raw == second.raw
    assert b" " not in first.raw
    assert parse_manifest(first.raw) == first


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode(manifest_doc())[:-20], "not valid JSON at line 1"),
        (b"", "not valid JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (encode(manifest_doc(schemaVersion=1)), "schemaVersion: must be 2 (got 1)"),
        (encode(manifest_doc(schemaVersion=True)), "schemaVersion: must be 2"),
        (
            encode({k: v for k, v in manifest_doc().items() if k != "schemaVersion"}),
            "schemaVersion: must be 2 (got None)",
        ),
        (
            encode({k: v for k, v in manifest_doc().items() if k != "config"}),
            "manifest: config: missing",
        ),
        (
            encode({k: v for k, v in manifest_doc().items() if k != "layers"}),
            "manifest: layers: missing",
        ),
        (encode(manifest_doc(layers={})), "manifest: layers: must be a list"),
        (
            encode(manifest_doc(mediaType="application/vnd.docker.distribution.manifest.v1+json")),
            "mediaType: unsupported 'application/vnd.docker.distribution.manifest.v1+json'",
        ),
        (encode(manifest_doc(mediaType=7)), "mediaType: must be a string"),
        (encode(manifest_doc(layers=[{"mediaType": "x", "size": 1}])), "layers[0].digest: missing"),
        (
            encode(
                manifest_doc(
                    layers=[
                        {"mediaType": "x", "digest": D1, "size": 1},
                        {"mediaType": "x", "size": 1},
                    ]
                )
            ),
            "layers[1].digest: missing",
        ),
        (
            encode(manifest_doc(layers=[{"mediaType": "x", "digest": "sha256:zz", "size": 1}])),
            "layers[0].digest: invalid sha256",
        ),
        (
            encode(manifest_doc(layers=[{"mediaType": "x", "digest": D1, "size": -1}])),
            "layers[0].size: must be a non-negative integer (got -1)",
        ),
        (
            encode(manifest_doc(layers=[{"mediaType": "x", "digest": D1, "size": "12"}])),
            "layers[0].size: must be a non-negative integer (got '12')",
        ),
        (encode(manifest_doc(layers=[{"digest": D1, "size": 1}])), "layers[0].mediaType: missing"),
        (encode(manifest_doc(config="x")), "config: must be an object (got str)"),
        (encode(manifest_doc(annotations={"a": 1})), "annotations: must map strings to strings"),
        (
            encode(
                {
                    "schemaVersion": 2,
                    "mediaType": mediatypes.OCI_INDEX,
                    "manifests": [
                        {"mediaType": "x", "digest": D1, "size": 1, "platform": {"os": "linux"}}
                    ],
                }
            ),
            "index: manifests[0].platform.architecture: missing",
        ),
        (
            encode({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX}),
            "index: manifests: missing",
        ),
        (encode({"schemaVersion": 2}), "mediaType: missing, and no manifests or layers"),
    ],
)
def test_bad_manifests_name_the_field(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data)
    assert message in str(caught.value)


def test_wrong_media_type_in_header_does_not_turn_a_manifest_into_an_index() -> None:
    doc = manifest_doc()
    del doc["mediaType"]
    with pytest.raises(ManifestError, match="index: manifests: missing"):
        parse_manifest(encode(doc), mediatypes.OCI_INDEX)


def test_oversized_manifests_are_refused_before_parsing() -> None:
    doc = manifest_doc(annotations={"padding": "x" * MAX_MANIFEST_SIZE})
    with pytest.raises(ManifestError, match=r"manifest is \d+ bytes; the limit is 4194304 bytes"):
        parse_manifest(encode(doc))


def config_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/bin/app"],
            "Cmd": ["--serve"],
            "Env": ["A=1"],
            "WorkingDir": "/srv",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"team": "x"},
        },
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
        "history": [{}, {}],
    }
    doc.update(changes)
    return doc


def test_parses_an_image_config() -> None:
    data = encode(config_doc())
    config = parse_config(data)
    assert config.platform == Platform("linux", "amd64")
    assert config.diff_ids == (Digest.parse(D1), Digest.parse(D2))
    assert config.run.entrypoint == ("/bin/app",)
    assert config.run.exposed_ports == ("8080/tcp",)
    assert dict(config.run.labels) == {"team": "x"}
    assert config.digest == Digest.of(data)
    assert config.history_length == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"os": None}, "config: os: missing"),
        ({"rootfs": {"type": "layers"}}, "rootfs.diff_ids: missing"),
        ({"rootfs": {"type": "other", "diff_ids": []}}, "rootfs.type: must be 'layers'"),
        (
            {"rootfs": {"type": "layers", "diff_ids": ["nope"]}},
            "rootfs.diff_ids[0]: invalid digest",
        ),
        ({"config": {"Env": "A=1"}}, "config.Env: must be a list of strings"),
        ({"config": {"Labels": {"a": 1}}}, "config.Labels: must map strings to strings"),
    ],
)
def test_bad_configs_name_the_field(changes: dict[str, Any], message: str) -> None:
    doc = config_doc(**changes)
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(ManifestError) as caught:
        parse_config(encode(doc))
    assert message in str(caught.value)
