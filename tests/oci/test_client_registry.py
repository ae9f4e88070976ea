"""The registry client against real registry processes (docker-registry, berth's own)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runners.errors import DigestError, RegistryNotFound, RegistryUnavailable
from runners.oci.client import RegistryClient, RegistryOptions
from runners.oci.digest import Digest
from runners.oci.layout import OCILayout
from runners.oci.manifest import ImageIndex, ImageManifest, Platform
from runners.oci.progress import BlobProgress, BlobState
from tests.helpers.procs import free_port
from tests.oci.conftest import FAST, ClientFactory, RunningRegistry
from tests.oci.images import blob_digests, make_image, make_index_image, noise

pytestmark = pytest.mark.integration


def test_push_then_pull_round_trip(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src", "v1", [{"a.txt": b"a"}, {"b.bin": noise(300_000, 1)}])
    ref = registry.ref("team/app:v1")

    pushed = client.push_image(image.layout, ref, tag="v1")
    assert pushed.digest == image.manifest.digest
    assert str(pushed.reference) == f"{registry.host}/team/app:v1@{image.manifest.digest}"
    assert {b.state for b in pushed.blobs} == {BlobState.DONE}
    assert {b.digest for b in pushed.blobs} == {b.digest for b in image.blobs}

    again = client.push_image(image.layout, ref, tag="v1")
    assert [b.state for b in again.blobs] == [BlobState.EXISTS] * len(image.blobs)
    assert again.uploaded_bytes == 0

    out = OCILayout.create(tmp_path / "out")
    pulled = client.pull_image(ref, out)
    assert pulled.digest == image.manifest.digest
    assert pulled.index_digest is None
    assert out.tags() == ["v1"]
    assert out.resolve("v1").digest == image.manifest.digest
    assert blob_digests(out) == blob_digests(image.layout)
    for blob in image.blobs:
        assert (
            out.blob_path(blob.digest).read_bytes()
            == image.layout.blob_path(blob.digest).read_bytes()
        )

    # A second pull finds every blob in the store and transfers nothing.
    second = client.pull_image(ref, out, tag="copy")
    assert {b.state for b in second.blobs} == {BlobState.EXISTS}
    assert out.tags() == ["copy", "v1"]


def test_manifests_by_tag_and_digest(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src")
    ref = registry.ref("app:v1")
    client.push_image(image.layout, ref)
    by_tag = client.get_manifest(ref)
    by_digest = client.get_manifest(ref.with_tag(None).with_digest(image.manifest.digest))
    assert isinstance(by_tag, ImageManifest)
    assert by_tag.raw == by_digest.raw == image.manifest.raw
    head = client.head_manifest(ref)
    assert head is not None
    assert head.digest == image.manifest.digest
    assert head.size == len(image.manifest.raw)
    assert client.head_manifest(registry.ref("app:nope")) is None
    config = client.fetch_blob(ref, image.manifest.config.digest)
    assert Digest.of(config) == image.manifest.config.digest
    with pytest.raises(RegistryNotFound, match=r"manifest .*app:nope: not found on 127\.0\.0\.1"):
        client.get_manifest(registry.ref("app:nope"))


def test_chunked_upload_of_a_large_blob(
    registry: RunningRegistry, make_client: ClientFactory, tmp_path: Path
) -> None:
    options = RegistryOptions(
        backoff=0.01, monolithic_limit=256 * 1024, chunk_size=1 << 20, parallel=2
    )
    client = make_client(options)
    data = noise(3 * (1 << 20) + 12345, seed=7)
    image = make_image(tmp_path / "src", "v1", [{"big.bin": data}], compress=False)
    ref = registry.ref("big/app:v1")
    events: list[BlobProgress] = []
    lock = threading.Lock()

    def record(event: BlobProgress) -> None:
        with lock:
            events.append(event)

    client.push_image(image.layout, ref, progress=record)
    layer = image.manifest.layers[0]
    done = [e for e in events if e.digest == layer.digest]
    assert done[-1] == BlobProgress(layer.digest, layer.size, layer.size, BlobState.DONE)
    assert max(e.done for e in done if e.state is BlobState.TRANSFERRING) == layer.size

    target = tmp_path / "layer.bin"
    client.get_blob(ref, layer.digest, target, size=layer.size)
    assert target.read_bytes() == image.layout.blob_path(layer.digest).read_bytes()


def test_cross_repository_mount(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src", "v1", [{"base": noise(50_000, 3)}])
    client.push_image(image.layout, registry.ref("base/app:v1"))

    mounted = client.push_image(image.layout, registry.ref("other/app:v1"), mount_from=["base/app"])
    assert {b.state for b in mounted.blobs} == {BlobState.MOUNTED}
    assert client.get_manifest(registry.ref("other/app:v1")).digest == image.manifest.digest
    out = OCILayout.create(tmp_path / "out")
    client.pull_image(registry.ref("other/app:v1"), out)
    assert blob_digests(out) == blob_digests(image.layout)

    layer = image.manifest.layers[0].digest
    assert client.mount_blob(registry.ref("third/app"), layer, "base/app") is True
    assert client.blob_exists(registry.ref("third/app"), layer)
    # A blob the source does not have is not mounted; the upload session is abandoned.
    missing = Digest.of(b"never pushed")
    assert client.mount_blob(registry.ref("third/app"), missing, "base/app") is False
    assert not client.blob_exists(registry.ref("third/app"), missing)


def test_push_blob_low_level(registry: RunningRegistry, client: RegistryClient) -> None:
    ref = registry.ref("blobs/app")
    data = b"some config"
    assert client.push_blob(ref, data) is BlobState.DONE
    assert client.push_blob(ref, data) is BlobState.EXISTS
    assert client.stat_blob(ref, Digest.of(data)) == len(data)
    with pytest.raises(DigestError, match="not sha256:"):
        client.push_blob(ref, data, digest=Digest.of(b"other"))


def test_tags_follow_pagination(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src")
    names = ["a", "b", "c", "d", "e"]
    client.push_image(image.layout, registry.ref("paged/app:a"))
    for name in names[1:]:
        client.put_manifest(registry.ref(f"paged/app:{name}"), image.manifest)
    assert sorted(client.list_tags(registry.ref("paged/app"), page_size=2)) == names
    assert sorted(client.list_tags(registry.ref("paged/app"))) == names
    with pytest.raises(RegistryNotFound):
        client.list_tags(registry.ref("never/pushed"))


def test_delete_manifest(registry: RunningRegistry, client: RegistryClient, tmp_path: Path) -> None:
    image = make_image(tmp_path / "src")
    ref = registry.ref("gone/app:v1")
    client.push_image(image.layout, ref)
    assert client.delete_manifest(ref) == image.manifest.digest
    assert client.head_manifest(ref.with_tag(None).with_digest(image.manifest.digest)) is None
    with pytest.raises(RegistryNotFound):
        client.delete_manifest(ref)


def test_multi_platform_index(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    platforms = [Platform("linux", "arm64", "v8"), Platform("linux", "amd64")]
    layout = make_index_image(tmp_path / "src", "v1", platforms)
    ref = registry.ref("multi/app:v1")
    pushed = client.push_image(layout, ref)
    index = client.get_manifest(ref)
    assert isinstance(index, ImageIndex)
    assert pushed.digest == index.digest == layout.resolve("v1").digest
    assert len(pushed.manifests) == 3

    out = OCILayout.create(tmp_path / "out")
    pulled = client.pull_image(ref, out)
    assert pulled.index_digest == index.digest
    assert pulled.platform == Platform("linux", "amd64")
    assert pulled.digest == index.select(Platform("linux", "amd64")).digest
    arm = client.pull_image(ref, out, tag="arm", platform=Platform.parse("linux/arm64"))
    assert arm.digest == index.select(Platform("linux", "arm64")).digest
    assert out.tags() == ["arm", "v1"]


def test_unreachable_registry_fails_after_bounded_retries(make_client: ClientFactory) -> None:
    client = make_client(FAST)
    ref = RunningRegistry("none", f"127.0.0.1:{free_port()}", Path()).ref("a:v1")
    with pytest.raises(
        RegistryUnavailable, match=r"cannot reach registry 127\.0\.0\.1:\d+ .* after 4 attempts"
    ):
        client.get_manifest(ref)
