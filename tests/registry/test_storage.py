from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from pipeline.registry.clock import ManualClock
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.registry.manifests import parse_manifest
from runners.oci.digest import Digest
from tests.registry.support import OCI_MANIFEST, descriptor, image_manifest

pytestmark = pytest.mark.unit


def _upload(storage: FilesystemRegistryStorage, repo: str, data: bytes) -> Digest:
    state = storage.create_upload(repo)
    writer = storage.open_upload(repo, state.upload_id, 0)
    writer.write(data)
    writer.finish()
    digest = Digest.of(data)
    storage.complete_upload(repo, state.upload_id, digest)
    return digest


def _code(excinfo: pytest.ExceptionInfo[DistributionError]) -> tuple[ErrorCode, int]:
    return excinfo.value.code, excinfo.value.status


def test_completed_upload_is_a_content_addressed_blob_linked_into_one_repo(
    storage: FilesystemRegistryStorage,
) -> None:
    digest = _upload(storage, "apps/demo", b"hello")
    assert storage.blob_size("apps/demo", digest) == 5
    assert storage.blob_size("other", digest) is None
    path = storage.root / "blobs" / "sha256" / digest.hex[:2] / digest.hex
    assert path.read_bytes() == b"hello"
    with storage.open_blob("apps/demo", digest) as reader:  # type: ignore[union-attr]
        assert reader.read_at(1, 3) == b"ell"
    assert list((storage.root / "uploads").iterdir()) == []


def test_chunks_append_and_report_their_offset(storage: FilesystemRegistryStorage) -> None:
    state = storage.create_upload("app")
    for offset, chunk in ((0, b"abc"), (3, b"defg")):
        writer = storage.open_upload("app", state.upload_id, offset)
        writer.write(chunk)
        assert writer.offset == offset + len(chunk)
        writer.finish()
    assert storage.upload_state("app", state.upload_id).offset == 7
    assert storage.complete_upload("app", state.upload_id, Digest.of(b"abcdefg")) == 7


def test_out_of_order_chunk_is_416_with_the_current_range(
    storage: FilesystemRegistryStorage,
) -> None:
    state = storage.create_upload("app")
    writer = storage.open_upload("app", state.upload_id, None)
    writer.write(b"0123456789")
    writer.finish()
    with pytest.raises(DistributionError) as info:
        storage.open_upload("app", state.upload_id, 5)
    assert _code(info) == (ErrorCode.BLOB_UPLOAD_INVALID, 416)
    assert info.value.headers["Range"] == "0-9"


def test_a_session_takes_one_writer_at_a_time(storage: FilesystemRegistryStorage) -> None:
    state = storage.create_upload("app")
    first = storage.open_upload("app", state.upload_id, 0)
    with pytest.raises(DistributionError) as info:
        storage.open_upload("app", state.upload_id, 0)
    assert _code(info) == (ErrorCode.BLOB_UPLOAD_INVALID, 416)
    first.abort()
    storage.open_upload("app", state.upload_id, 0).abort()


def test_aborted_write_leaves_the_session_as_it_was(storage: FilesystemRegistryStorage) -> None:
    state = storage.create_upload("app")
    writer = storage.open_upload("app", state.upload_id, 0)
    writer.write(b"keep")
    writer.finish()
    writer = storage.open_upload("app", state.upload_id, 4)
    writer.write(b"half of a chunk")
    writer.abort()
    assert storage.upload_state("app", state.upload_id).offset == 4
    assert (storage.root / "uploads" / state.upload_id / "data").read_bytes() == b"keep"
    storage.complete_upload("app", state.upload_id, Digest.of(b"keep"))


def test_digest_mismatch_stores_nothing_and_ends_the_session(
    storage: FilesystemRegistryStorage,
) -> None:
    state = storage.create_upload("app")
    writer = storage.open_upload("app", state.upload_id, 0)
    writer.write(b"actual bytes")
    writer.finish()
    claimed = Digest.of(b"other bytes")
    with pytest.raises(DistributionError) as info:
        storage.complete_upload("app", state.upload_id, claimed)
    assert _code(info) == (ErrorCode.DIGEST_INVALID, 400)
    assert info.value.detail["actual"] == str(Digest.of(b"actual bytes"))
    assert storage.blob_size("app", claimed) is None
    assert storage.blob_size("app", Digest.of(b"actual bytes")) is None
    assert [p for p in (storage.root / "blobs").rglob("*") if p.is_file()] == []
    with pytest.raises(DistributionError) as info:
        storage.upload_state("app", state.upload_id)
    assert _code(info) == (ErrorCode.BLOB_UPLOAD_UNKNOWN, 404)


def test_sessions_survive_a_restart_and_bytes_past_the_recorded_size_are_dropped(
    tmp_path: Path, clock: ManualClock
) -> None:
    root = tmp_path / "registry"
    first = FilesystemRegistryStorage(root, clock=clock)
    state = first.create_upload("app")
    writer = first.open_upload("app", state.upload_id, 0)
    writer.write(b"part one;")
    writer.finish()
    # a crash while a later chunk was being written leaves unrecorded bytes behind
    with open(root / "uploads" / state.upload_id / "data", "ab") as handle:
        handle.write(b"garbage from a killed request")
    second = FilesystemRegistryStorage(root, clock=clock)
    assert second.upload_state("app", state.upload_id).offset == 9
    writer = second.open_upload("app", state.upload_id, 9)
    writer.write(b"part two")
    writer.finish()
    digest = Digest.of(b"part one;part two")
    assert second.complete_upload("app", state.upload_id, digest) == 17
    assert second.blob_size("app", digest) == 17


def test_sha512_digests_are_verified_too(storage: FilesystemRegistryStorage) -> None:
    state = storage.create_upload("app")
    writer = storage.open_upload("app", state.upload_id, 0)
    writer.write(b"data")
    writer.finish()
    digest = Digest.of(b"data", "sha512")
    storage.complete_upload("app", state.upload_id, digest)
    assert storage.blob_size("app", digest) == 4


@pytest.mark.parametrize("upload_id", ["nope", "../../etc", "0" * 32])
def test_unknown_upload_ids(storage: FilesystemRegistryStorage, upload_id: str) -> None:
    with pytest.raises(DistributionError) as info:
        storage.upload_state("app", upload_id)
    assert _code(info) == (ErrorCode.BLOB_UPLOAD_UNKNOWN, 404)


def test_a_session_belongs_to_its_repository(storage: FilesystemRegistryStorage) -> None:
    state = storage.create_upload("app")
    with pytest.raises(DistributionError) as info:
        storage.open_upload("other", state.upload_id, 0)
    assert info.value.code is ErrorCode.BLOB_UPLOAD_UNKNOWN


def test_sessions_expire_and_the_sweep_removes_their_files(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    stale = storage.create_upload("app")
    writer = storage.open_upload("app", stale.upload_id, 0)
    writer.write(b"x" * 100)
    writer.finish()
    clock.advance(500)
    fresh = storage.create_upload("app")
    clock.advance(200)  # stale is 700 s idle (ttl 600), fresh 200 s
    assert storage.sweep_uploads() == 1
    assert not (storage.root / "uploads" / stale.upload_id).exists()
    assert storage.upload_state("app", fresh.upload_id).offset == 0
    clock.advance(601)
    with pytest.raises(DistributionError) as info:
        storage.upload_state("app", fresh.upload_id)
    assert "expired" in str(info.value)
    assert not (storage.root / "uploads" / fresh.upload_id).exists()


def test_sweep_removes_manifest_files_left_by_a_crash(
    tmp_path: Path,
) -> None:
    storage = FilesystemRegistryStorage(tmp_path / "registry", upload_ttl=60)
    leftover = storage.root / "uploads" / "manifest-0123.tmp"
    leftover.write_bytes(b"{}")
    fresh = storage.root / "uploads" / "manifest-4567.tmp"
    fresh.write_bytes(b"{}")
    old = storage.clock.now() - 120
    os.utime(leftover, (old, old))
    assert storage.sweep_uploads() == 1
    assert not leftover.exists()
    assert fresh.exists()


def test_writing_keeps_a_session_alive(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    state = storage.create_upload("app")
    for _ in range(3):
        clock.advance(400)
        writer = storage.open_upload("app", state.upload_id, None)
        writer.write(b"x")
        writer.finish()
    assert storage.sweep_uploads() == 0
    assert storage.upload_state("app", state.upload_id).offset == 3


def test_concurrent_uploads_of_the_same_blob_both_succeed_with_one_file(
    storage: FilesystemRegistryStorage,
) -> None:
    data = b"same content " * 100_000
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def upload(repo: str) -> None:
        try:
            state = storage.create_upload(repo)
            writer = storage.open_upload(repo, state.upload_id, 0)
            for i in range(0, len(data), 65536):
                writer.write(data[i : i + 65536])
            writer.finish()
            barrier.wait(timeout=10)
            storage.complete_upload(repo, state.upload_id, Digest.of(data))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(f"repo{i % 2}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    digest = Digest.of(data)
    files = [p for p in (storage.root / "blobs").rglob("*") if p.is_file()]
    assert files == [storage.root / "blobs" / "sha256" / digest.hex[:2] / digest.hex]
    assert storage.blob_size("repo0", digest) == storage.blob_size("repo1", digest) == len(data)
    assert list((storage.root / "uploads").iterdir()) == []


def test_open_blob_survives_deletion_of_its_name(storage: FilesystemRegistryStorage) -> None:
    digest = _upload(storage, "app", b"0123456789")
    reader = storage.open_blob("app", digest)
    assert reader is not None
    assert storage.remove_blob(digest, cutoff=storage.clock.now() + 1)
    assert storage.open_blob("app", digest) is None
    assert reader.read_at(0, 10) == b"0123456789"
    reader.close()


def test_mount_needs_the_blob_in_the_source(storage: FilesystemRegistryStorage) -> None:
    digest = _upload(storage, "source", b"shared")
    assert not storage.mount_blob("target", digest, "elsewhere")
    assert storage.blob_size("target", digest) is None
    assert storage.mount_blob("target", digest, "source")
    assert storage.blob_size("target", digest) == 6


def test_manifest_needs_its_blobs_in_the_repository(storage: FilesystemRegistryStorage) -> None:
    config, layer = b"{}", b"layer"
    data = image_manifest(config, [layer])
    parsed = parse_manifest(data, OCI_MANIFEST)
    _upload(storage, "app", config)
    _upload(storage, "elsewhere", layer)  # present in the registry, not in this repo
    with pytest.raises(DistributionError) as info:
        storage.put_manifest("app", data, parsed, Digest.of(data), "v1")
    assert _code(info) == (ErrorCode.MANIFEST_BLOB_UNKNOWN, 400)
    assert info.value.detail["missing"] == [
        {"digest": descriptor(layer, "x")["digest"], "kind": "blob"}
    ]
    assert storage.get_manifest("app", "v1") is None
    _upload(storage, "app", layer)
    storage.put_manifest("app", data, parsed, Digest.of(data), "v1")
    stored = storage.get_manifest("app", "v1")
    assert stored is not None
    assert (stored.data, stored.media_type, stored.digest) == (data, OCI_MANIFEST, Digest.of(data))
    assert storage.get_manifest("app", Digest.of(data)) == stored


def test_manifest_size_must_match_the_blob(storage: FilesystemRegistryStorage) -> None:
    _upload(storage, "app", b"{}")
    document = json.loads(image_manifest(b"{}", []))
    document["config"]["size"] = 3
    data = json.dumps(document).encode()
    with pytest.raises(DistributionError) as info:
        storage.put_manifest("app", data, parse_manifest(data, OCI_MANIFEST), Digest.of(data), None)
    assert info.value.code is ErrorCode.MANIFEST_INVALID


def test_tags_and_deletion(storage: FilesystemRegistryStorage) -> None:
    _upload(storage, "app", b"{}")
    data = image_manifest(b"{}", [])
    digest = Digest.of(data)
    parsed = parse_manifest(data, OCI_MANIFEST)
    for tag in ("b", "a", "c"):
        storage.put_manifest("app", data, parsed, digest, tag)
    assert storage.tags("app") == ["a", "b", "c"]
    assert storage.tags("nothing") is None
    assert storage.delete_tag("app", "b")
    assert not storage.delete_tag("app", "b")
    assert storage.tags("app") == ["a", "c"]
    assert storage.delete_manifest("app", digest)
    assert storage.tags("app") == []
    assert storage.get_manifest("app", digest) is None
    assert not storage.delete_manifest("app", digest)


def test_pins(storage: FilesystemRegistryStorage) -> None:
    digest = Digest.of(b"x")
    storage.pin("apps/demo", digest, "release 1 in prod")
    storage.pin("apps/demo", digest, "release 1 in prod (again)")
    storage.pin("other", digest, "base")
    pins = storage.list_pins()
    assert [(p.repository, p.reason) for p in pins] == [
        ("apps/demo", "release 1 in prod (again)"),
        ("other", "base"),
    ]
    assert storage.unpin("apps/demo", digest)
    assert not storage.unpin("apps/demo", digest)
    assert [p.repository for p in storage.list_pins()] == ["other"]


def test_repositories_are_listed_with_nesting(storage: FilesystemRegistryStorage) -> None:
    for repo in ("b", "a/x", "a", "a/x/y"):
        _upload(storage, repo, repo.encode())
    assert storage.repositories() == ["a", "a/x", "a/x/y", "b"]
    assert storage.repository_exists("a/x")
    assert not storage.repository_exists("a/nothing")
