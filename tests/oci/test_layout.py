"""OCI layout directories, OCI archives, verified blob writes and image locations."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from runners.errors import DigestError, OCIError, ReferenceError_
from runners.oci import mediatypes
from runners.oci.archive import OCIArchive, staged_archive, write_archive
from runners.oci.digest import Digest
from runners.oci.layout import OCILayout
from runners.oci.location import LocalFormat, LocalImage, parse_location
from runners.oci.manifest import REF_NAME_ANNOTATION, Descriptor
from runners.oci.reference import Reference
from tests.oci.images import blob_digests, make_image, noise

pytestmark = pytest.mark.unit


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*"))


def test_create_writes_the_marker_and_an_empty_index(tmp_path: Path) -> None:
    layout = OCILayout.create(tmp_path / "img")
    assert json.loads((layout.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert layout.index().manifests == ()
    assert OCILayout.open(layout.root).tags() == []


def test_open_refuses_what_is_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(OCIError, match="not an OCI image layout"):
        OCILayout.open(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(OCIError, match=r"unsupported imageLayoutVersion '2\.0\.0'"):
        OCILayout.open(tmp_path)


def test_blob_writer_publishes_only_verified_content(tmp_path: Path) -> None:
    layout = OCILayout.create(tmp_path / "img")
    data = noise(3 << 20, seed=1)
    digest = Digest.of(data)
    with layout.blob_writer(digest, len(data)) as writer:
        writer.write(data[:100])
        writer.reset()  # as when a server ignores Range
        for start in range(0, len(data), 1 << 20):
            writer.write(data[start : start + (1 << 20)])
        assert writer.offset == len(data)
        assert not layout.has_blob(digest)
        writer.commit()
    assert layout.blob_path(digest).read_bytes() == data
    assert layout.blob_path(digest).stat().st_mode & 0o777 == 0o644
    assert leftovers(layout.root) == []


def write_blob(layout: OCILayout, digest: Digest, size: int, data: bytes) -> None:
    with layout.blob_writer(digest, size) as writer:
        writer.write(data)
        writer.commit()


def test_blob_writer_rejects_wrong_content_and_leaves_nothing(tmp_path: Path) -> None:
    layout = OCILayout.create(tmp_path / "img")
    digest = Digest.of(b"right")
    with pytest.raises(DigestError, match="content does not match its digest"):
        write_blob(layout, digest, 5, b"wrong")
    with pytest.raises(DigestError, match="got 3 bytes, its descriptor says 5"):
        write_blob(layout, digest, 5, b"rig")
    with pytest.raises(DigestError, match="more than the 5 bytes"):
        write_blob(layout, digest, 5, b"right!")
    assert not layout.has_blob(digest)
    assert leftovers(layout.root) == []


def abandon_write(layout: OCILayout) -> None:
    with layout.blob_writer(Digest.of(b"x")) as writer:
        writer.write(b"x")
        raise RuntimeError("interrupted")


def test_abandoned_writer_leaves_nothing(tmp_path: Path) -> None:
    layout = OCILayout.create(tmp_path / "img")
    with pytest.raises(RuntimeError, match="interrupted"):
        abandon_write(layout)
    assert leftovers(layout.root) == []


def test_tags_move_between_entries(tmp_path: Path) -> None:
    first = make_image(tmp_path / "img", "v1", label="one")
    second = make_image(tmp_path / "img", "v2", label="two")
    layout = first.layout
    assert layout.tags() == ["v1", "v2"]
    assert layout.resolve("v1").digest == first.manifest.digest
    layout.add_manifest(second.manifest.descriptor, "v1")
    assert layout.resolve("v1").digest == second.manifest.digest
    assert len(layout.index().manifests) == 2
    with pytest.raises(OCIError, match=r"holds 2 images; name one as oci:DIR:TAG \(tags: v1, v2\)"):
        layout.resolve(None)
    with pytest.raises(OCIError, match="no image tagged 'v3'"):
        layout.resolve("v3")
    with pytest.raises(OCIError, match="is not stored"):
        layout.add_manifest(Descriptor(mediatypes.OCI_MANIFEST, Digest.of(b"?"), 1), "x")


def test_archive_round_trip(tmp_path: Path) -> None:
    image = make_image(tmp_path / "img", "v1", [{"a": b"a"}, {"big": noise(2 << 20, seed=2)}])
    archive_path = tmp_path / "img.tar"
    write_archive(image.layout, archive_path)
    with tarfile.open(archive_path) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 for m in tar.getmembers())
    assert names[:2] == ["blobs", "blobs/sha256"]
    assert "oci-layout" in names
    assert "index.json" in names
    archive = OCIArchive.open(archive_path)
    assert archive.tags() == ["v1"]
    assert archive.resolve("v1") == image.layout.resolve("v1")
    for blob in image.blobs:
        assert archive.blob_size(blob.digest) == blob.size
        with archive.open_blob(blob.digest) as stream:
            assert Digest.of_stream(stream) == (blob.digest, blob.size)
    big = image.manifest.layers[1]
    with archive.open_blob(big.digest) as stream:
        stream.seek(big.size - 10)
        assert stream.read() == image.layout.blob_path(big.digest).read_bytes()[-10:]
    with pytest.raises(OCIError, match="is missing"):
        archive.open_blob(Digest.of(b"absent"))


def test_archive_problems(tmp_path: Path) -> None:
    with pytest.raises(OCIError, match="no such OCI archive"):
        OCIArchive.open(tmp_path / "missing.tar")
    (tmp_path / "junk.tar").write_bytes(b"\x1f\x8b" + b"\0" * 600)
    with pytest.raises(OCIError, match="not an uncompressed tar file"):
        OCIArchive.open(tmp_path / "junk.tar")
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(OCIError, match="not an OCI archive"):
        OCIArchive.open(tmp_path / "empty.tar")


def fail_while_staging(target: Path) -> None:
    with staged_archive(target) as layout:
        layout.write_blob(b"partial")
        raise RuntimeError("pull failed")


def test_staged_archive_replaces_atomically_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="pull failed"):
        fail_while_staging(target)
    assert target.read_bytes() == b"old"
    with staged_archive(target) as layout:
        digest = layout.write_blob(b"{}")
        layout.add_manifest(Descriptor(mediatypes.OCI_MANIFEST, digest, 2), "v9")
    assert OCIArchive.open(target).tags() == ["v9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar"]


def test_blob_digests_checks_every_file(tmp_path: Path) -> None:
    image = make_image(tmp_path / "img")
    assert blob_digests(image.layout) == {str(b.digest) for b in image.blobs} | {
        str(image.manifest.digest)
    }
    assert image.layout.index().manifests[0].annotations[REF_NAME_ANNOTATION] == "v1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci:img", LocalImage(LocalFormat.LAYOUT, Path("img"), None)),
        ("oci:/a/b:v1", LocalImage(LocalFormat.LAYOUT, Path("/a/b"), "v1")),
        ("oci-archive:x.tar:latest", LocalImage(LocalFormat.ARCHIVE, Path("x.tar"), "latest")),
        ("docker://127.0.0.1:5000/app:v1", Reference.parse("127.0.0.1:5000/app:v1")),
        ("busybox", Reference.parse("docker.io/library/busybox:latest")),
    ],
)
def test_parse_location(text: str, expected: object) -> None:
    assert parse_location(text) == expected


def test_parse_location_errors() -> None:
    with pytest.raises(OCIError, match="missing path"):
        parse_location("oci:")
    with pytest.raises(OCIError, match="invalid tag"):
        parse_location("oci:dir:-x")
    with pytest.raises(OCIError, match="convert other formats with skopeo"):
        parse_location("docker-archive:x.tar")
    with pytest.raises(ReferenceError_, match="expected an image reference, oci:DIR"):
        parse_location("Not A Ref")
    assert str(LocalImage(LocalFormat.ARCHIVE, Path("x.tar"), "v1")) == "oci-archive:x.tar:v1"
