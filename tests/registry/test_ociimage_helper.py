"""The test helper that writes OCI layouts: valid digests, determinism, tags."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from tests.helpers.ociimage import write_oci_layout

pytestmark = pytest.mark.unit


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def test_layout_is_content_addressed_and_complete(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digest = write_oci_layout(
        layout, "v1", files={"a/b.txt": b"hi"}, random_layer_size=3 << 20, busybox=True
    )
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    manifest = json.loads(_blob(layout, digest).read_text())
    assert len(manifest["layers"]) == 3
    for layer in manifest["layers"]:
        assert _blob(layout, layer["digest"]).stat().st_size == layer["size"]
    with tarfile.open(_blob(layout, manifest["layers"][0]["digest"])) as tar:
        names = tar.getnames()
        assert "bin/busybox" in names
        assert tar.getmember("bin/sh").linkname == "busybox"
    with tarfile.open(_blob(layout, manifest["layers"][2]["digest"])) as tar:
        assert tar.getmember("random.bin").size == 3 << 20
    config = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]


def test_same_arguments_same_digest_and_tags_accumulate(tmp_path: Path) -> None:
    first = write_oci_layout(tmp_path / "one", "v1", random_layer_size=1000, seed=7)
    again = write_oci_layout(tmp_path / "two", "v1", random_layer_size=1000, seed=7)
    other = write_oci_layout(tmp_path / "one", "v2", random_layer_size=1000, seed=8)
    assert first == again
    assert other != first
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    tags = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }
    assert tags == {"v1": first, "v2": other}
