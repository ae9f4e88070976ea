"""Interoperability with skopeo: images cross between skopeo and berth's client through
a real registry with every digest unchanged (manifest and each blob)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from runners.oci.client import RegistryClient
from runners.oci.layout import OCILayout
from runners.oci.manifest import Platform
from tests.oci.conftest import RunningRegistry, need_tool
from tests.oci.images import blob_digests, make_image, make_index_image, noise

pytestmark = pytest.mark.integration


def skopeo(tmp_path: Path, *args: str) -> str:
    binary = need_tool("skopeo", "skopeo")
    home = tmp_path / "skopeo-home"
    home.mkdir(exist_ok=True)
    # A private HOME keeps skopeo's blob-info cache from leaking between tests.
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def test_skopeo_pushes_berth_pulls(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src", "v1", [{"a": b"alpha"}, {"b": noise(400_000, 1)}])
    skopeo(
        tmp_path,
        "copy", "--quiet", "--dest-tls-verify=false",
        f"oci:{image.layout.root}:v1", f"docker://{registry.host}/interop/skopeo:v1",
    )  # fmt: skip
    out = OCILayout.create(tmp_path / "out")
    pulled = client.pull_image(registry.ref("interop/skopeo:v1"), out)
    assert pulled.digest == image.manifest.digest
    assert out.resolve("v1").digest == image.manifest.digest
    assert blob_digests(out) == blob_digests(image.layout)


def test_berth_pushes_skopeo_pulls(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src", "v1", [{"a": b"alpha"}, {"b": noise(400_000, 2)}])
    pushed = client.push_image(image.layout, registry.ref("interop/berth:v1"))
    inspected = json.loads(
        skopeo(
            tmp_path, "inspect", "--tls-verify=false", f"docker://{registry.host}/interop/berth:v1"
        )
    )
    assert inspected["Digest"] == str(pushed.digest)
    assert inspected["Layers"] == [str(layer.digest) for layer in image.manifest.layers]
    out = tmp_path / "skopeo-out"
    skopeo(
        tmp_path,
        "copy", "--quiet", "--src-tls-verify=false",
        f"docker://{registry.host}/interop/berth:v1", f"oci:{out}:v1",
    )  # fmt: skip
    copied = OCILayout.open(out)
    assert copied.resolve("v1").digest == image.manifest.digest
    assert blob_digests(copied) == blob_digests(image.layout)


def test_multi_platform_index_pushed_by_berth_is_read_by_skopeo(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    layout = make_index_image(
        tmp_path / "src", "v1", [Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]
    )
    pushed = client.push_image(layout, registry.ref("interop/multi:v1"))
    raw = skopeo(
        tmp_path,
        "inspect",
        "--raw",
        "--tls-verify=false",
        f"docker://{registry.host}/interop/multi:v1",
    )
    assert raw.encode() == layout.read_blob(pushed.digest)
    out = tmp_path / "skopeo-out"
    skopeo(
        tmp_path,
        "copy", "--quiet", "--all", "--src-tls-verify=false",
        f"docker://{registry.host}/interop/multi:v1", f"oci:{out}:v1",
    )  # fmt: skip
    assert blob_digests(OCILayout.open(out)) == blob_digests(layout)
