"""The client against a registry that misbehaves: corrupt blobs, dropped connections,
ignored ranges, 5xx answers. The fake registry is a real HTTP server on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runners.errors import DigestError, RegistryError, RegistryUnavailable
from runners.oci import mediatypes
from runners.oci.client import RegistryClient, RegistryOptions
from runners.oci.digest import Digest
from runners.oci.layout import OCILayout
from runners.oci.manifest import Descriptor, build_manifest
from runners.oci.progress import BlobState
from tests.oci.conftest import FAST, ClientFactory
from tests.oci.fakeregistry import FakeRegistry
from tests.oci.images import noise

pytestmark = pytest.mark.integration


def serve_image(fake: FakeRegistry, repository: str, tag: str, layer: bytes) -> tuple[str, str]:
    """Put an image straight into the fake registry; return (layer digest, manifest digest)."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    config_digest = fake.add_blob(repository, config)
    layer_digest = fake.add_blob(repository, layer)
    manifest = build_manifest(
        Descriptor(mediatypes.OCI_CONFIG, Digest.parse(config_digest), len(config)),
        [Descriptor(mediatypes.OCI_LAYER_GZIP, Digest.parse(layer_digest), len(layer))],
    )
    fake.manifests[(repository, tag)] = (manifest.media_type, manifest.raw)
    fake.manifests[(repository, str(manifest.digest))] = (manifest.media_type, manifest.raw)
    return layer_digest, str(manifest.digest)


def stored(layout: OCILayout) -> list[str]:
    """Every file under blobs/, temp files included."""
    return sorted(p.name for p in (layout.root / "blobs").rglob("*") if p.is_file())


def test_corrupt_blob_is_detected_and_nothing_is_kept(
    fake: FakeRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    layer, manifest = serve_image(fake, "app", "v1", noise(200_000, 1))
    fake.faults.corrupt.add(layer)
    out = OCILayout.create(tmp_path / "out")
    with pytest.raises(DigestError) as caught:
        client.pull_image(fake.ref("app:v1"), out)
    message = str(caught.value)
    assert f"blob {layer}: content does not match its digest" in message
    assert "the registry served corrupt data" in message
    assert layer.split(":")[1] not in stored(out)
    assert manifest.split(":")[1] not in stored(out)
    assert not [name for name in stored(out) if name.startswith(".")]
    assert out.index().manifests == ()


def test_interrupted_download_resumes_with_range(
    fake: FakeRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    data = noise(3_000_000, 2)
    layer, manifest = serve_image(fake, "app", "v1", data)
    fake.faults.cut_once.add(layer)
    out = OCILayout.create(tmp_path / "out")
    result = client.pull_image(fake.ref("app:v1"), out)
    assert str(result.digest) == manifest
    assert out.blob_path(Digest.parse(layer)).read_bytes() == data
    gets = [r for r in fake.requests if r.method == "GET" and r.path.endswith(layer)]
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    found = re.fullmatch(r"bytes=(\d+)-", gets[1].headers["Range"])
    assert found is not None
    assert 0 < int(found.group(1)) <= len(data) // 2


def test_server_that_ignores_range_makes_the_download_start_over(
    fake: FakeRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    data = noise(1_000_000, 3)
    layer, _ = serve_image(fake, "app", "v1", data)
    fake.faults.cut_once.add(layer)
    fake.faults.ignore_range = True
    target = tmp_path / "layer"
    client.get_blob(fake.ref("app"), Digest.parse(layer), target, size=len(data))
    assert target.read_bytes() == data
    assert fake.count("GET", layer) == 2


def test_5xx_answers_are_retried_a_bounded_number_of_times(
    fake: FakeRegistry, client: RegistryClient
) -> None:
    serve_image(fake, "app", "v1", b"layer")
    fake.faults.statuses[("GET", r"/manifests/v1$")] = [503, 502]
    assert client.get_manifest(fake.ref("app:v1")).media_type == mediatypes.OCI_MANIFEST
    assert fake.count("GET", r"/manifests/v1$") == 3

    fake.faults.statuses[("GET", r"/tags/list$")] = [503] * 50
    with pytest.raises(RegistryUnavailable, match=r"answered 503 to tag list of .* after retries"):
        client.list_tags(fake.ref("app"))
    assert fake.count("GET", r"/tags/list$") == FAST.retries + 1


def test_failed_upload_is_restarted_in_a_new_session(
    fake: FakeRegistry, make_client: ClientFactory
) -> None:
    client = make_client(RegistryOptions(backoff=0.01, monolithic_limit=100_000, chunk_size=64_000))
    data = noise(200_000, 4)
    fake.faults.statuses[("PATCH", r"/blobs/uploads/")] = [0, 500]  # the second PATCH fails
    state = client.push_blob(fake.ref("app"), data)
    assert state is BlobState.DONE
    assert fake.blobs[str(Digest.of(data))] == data
    assert fake.count("POST", r"/blobs/uploads/$") == 2
    patches = [r.headers["Content-Range"] for r in fake.requests if r.method == "PATCH"]
    assert patches == [
        "0-63999",
        "64000-127999",
        "0-63999",
        "64000-127999",
        "128000-191999",
        "192000-199999",
    ]


def test_chunked_upload_sends_contiguous_ranges(
    fake: FakeRegistry, make_client: ClientFactory
) -> None:
    client = make_client(RegistryOptions(monolithic_limit=0, chunk_size=100_000))
    data = noise(250_000, 5)
    client.push_blob(fake.ref("app"), data)
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert [p.headers["Content-Range"] for p in patches] == [
        "0-99999",
        "100000-199999",
        "200000-249999",
    ]
    assert [p.headers["Content-Length"] for p in patches] == ["100000", "100000", "50000"]
    put = [r for r in fake.requests if r.method == "PUT"]
    assert len(put) == 1
    assert f"digest={Digest.of(data)}".replace(":", "%3A") in put[0].path


def test_tag_list_pagination_is_followed(fake: FakeRegistry, client: RegistryClient) -> None:
    for number in range(7):
        fake.manifests[("app", f"t{number}")] = (mediatypes.OCI_MANIFEST, b"{}")
    assert client.list_tags(fake.ref("app"), page_size=3) == [f"t{n}" for n in range(7)]
    assert fake.count("GET", r"/tags/list") == 3


def test_manifest_not_matching_the_requested_digest_is_refused(
    fake: FakeRegistry, client: RegistryClient
) -> None:
    _, manifest = serve_image(fake, "app", "v1", b"layer")
    other = str(Digest.of(b"something else"))
    fake.manifests[("app", other)] = fake.manifests[("app", manifest)]
    with pytest.raises(DigestError, match=f"does not match {other}"):
        client.get_manifest(fake.ref(f"app@{other}"))


def test_a_server_that_is_not_a_registry(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.faults.statuses[("GET", r"^/v2/$")] = [404]
    with pytest.raises(
        RegistryError, match=r"is not an OCI registry: GET http://.*/v2/ answered 404"
    ):
        client.ping(fake.host)
