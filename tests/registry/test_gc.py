from __future__ import annotations

import pytest

from pipeline.registry.clock import ManualClock
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.registry.gc import (
    BlobRecord,
    Inventory,
    ManifestRecord,
    RepositoryRecord,
    apply_gc,
    plan_gc,
)
from pipeline.registry.manifests import parse_manifest
from pipeline.registry.storage import Pin
from runners.oci.digest import Digest
from tests.registry.support import (
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    image_manifest,
    index_manifest,
)

pytestmark = pytest.mark.unit

HOUR = 3600.0


def d(text: str) -> Digest:
    return Digest.of(text.encode())


def _blob(storage: FilesystemRegistryStorage, repo: str, data: bytes) -> Digest:
    state = storage.create_upload(repo)
    writer = storage.open_upload(repo, state.upload_id, 0)
    writer.write(data)
    writer.finish()
    digest = Digest.of(data)
    storage.complete_upload(repo, state.upload_id, digest)
    return digest


def _manifest(
    storage: FilesystemRegistryStorage,
    repo: str,
    data: bytes,
    tag: str | None,
    media_type: str = OCI_MANIFEST,
) -> Digest:
    digest = Digest.of(data)
    storage.put_manifest(repo, data, parse_manifest(data, media_type), digest, tag)
    return digest


def _image(
    storage: FilesystemRegistryStorage, repo: str, tag: str | None, *layers: bytes
) -> Digest:
    _blob(storage, repo, b"{}")
    for layer in layers:
        _blob(storage, repo, layer)
    return _manifest(storage, repo, image_manifest(b"{}", list(layers)), tag)


def _collect(storage: FilesystemRegistryStorage, grace: float = HOUR) -> None:
    plan = plan_gc(storage.inventory(), storage.clock.now(), grace)
    apply_gc(storage, plan)


def test_plan_is_pure_over_an_inventory() -> None:
    now = 10 * HOUR
    old, young = now - 2 * HOUR, now - 60
    tagged = ManifestRecord(d("m1"), old, blobs=frozenset({d("cfg"), d("l1")}))
    untagged = ManifestRecord(d("m2"), old, blobs=frozenset({d("cfg"), d("l2")}))
    fresh = ManifestRecord(d("m3"), young, blobs=frozenset({d("l3")}))
    repo = RepositoryRecord(
        "app",
        tags={"v1": d("m1")},
        manifests={m.digest: m for m in (tagged, untagged, fresh)},
        links={d(x): old for x in ("cfg", "l1", "l2", "l3", "m1", "m2", "m3", "orphan")},
    )
    blobs = {
        d(x): BlobRecord(1, old) for x in ("cfg", "l1", "l2", "l3", "m1", "m2", "m3", "orphan")
    }
    blobs[d("new-upload")] = BlobRecord(5, young)
    plan = plan_gc(Inventory((repo,), blobs), now, HOUR)
    assert plan.manifests == (("app", d("m2")),)
    assert set(plan.blobs) == {(d("l2"), 1), (d("m2"), 1), (d("orphan"), 1)}
    assert {digest for _, digest in plan.links} == {d("l2"), d("m2"), d("orphan")}
    assert plan.kept_manifests == 2
    assert plan.bytes_freed == 3
    assert plan.to_json()["bytes_freed"] == 3


def test_pins_keep_manifests_and_blobs() -> None:
    now = 10 * HOUR
    old = now - 2 * HOUR
    manifest = ManifestRecord(d("m"), old, blobs=frozenset({d("l")}))
    repo = RepositoryRecord("app", manifests={d("m"): manifest}, links={d("l"): old, d("m"): old})
    blobs = {d("l"): BlobRecord(1, old), d("m"): BlobRecord(1, old), d("loose"): BlobRecord(1, old)}
    pins = (Pin("app", d("m"), "prod", old), Pin("other", d("loose"), "base", old))
    plan = plan_gc(Inventory((repo,), blobs, pins), now, HOUR)
    assert plan.manifests == ()
    assert plan.blobs == ()
    assert plan.links == ()


def test_untagged_manifests_and_their_blobs_go_after_the_grace(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    kept = _image(storage, "app", "v1", b"shared", b"only-v1")
    dropped = _image(storage, "app", None, b"shared", b"only-untagged")
    clock.advance(30 * 60)
    _collect(storage)  # nothing is old enough yet
    assert storage.get_manifest("app", dropped) is not None
    clock.advance(HOUR)
    _collect(storage)
    assert storage.get_manifest("app", kept) is not None
    assert storage.get_manifest("app", dropped) is None
    assert storage.blob_size("app", Digest.of(b"shared")) == 6
    assert storage.blob_size("app", Digest.of(b"only-v1")) == 7
    assert storage.blob_size("app", Digest.of(b"only-untagged")) is None
    assert not storage.layout.blob(Digest.of(b"only-untagged")).exists()
    assert not storage.layout.blob(dropped).exists()


def test_blobs_used_by_another_repository_stay(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    _image(storage, "a", None, b"common")
    _image(storage, "b", "v1", b"common")
    clock.advance(2 * HOUR)
    _collect(storage)
    assert storage.blob_size("a", Digest.of(b"common")) is None  # a's link went
    assert storage.blob_size("b", Digest.of(b"common")) == 6  # the content stayed


def test_a_tagged_index_keeps_its_children(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    child = image_manifest(b"{}", [b"arm layer"])
    _blob(storage, "app", b"{}")
    _blob(storage, "app", b"arm layer")
    child_digest = _manifest(storage, "app", child, None)
    index = _manifest(storage, "app", index_manifest([child]), "multi", OCI_INDEX)
    clock.advance(2 * HOUR)
    _collect(storage)
    assert storage.get_manifest("app", child_digest) is not None
    assert storage.blob_size("app", Digest.of(b"arm layer")) == 9
    assert storage.delete_tag("app", "multi")
    clock.advance(2 * HOUR)
    _collect(storage)
    assert storage.get_manifest("app", index) is None
    assert storage.get_manifest("app", child_digest) is None
    assert storage.blob_size("app", Digest.of(b"arm layer")) is None


def test_referrers_live_as_long_as_their_subject(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    subject = _image(storage, "app", "v1", b"layer")
    subject_data = storage.get_manifest("app", subject)
    assert subject_data is not None
    _blob(storage, "app", b"signature")
    signature = _manifest(
        storage,
        "app",
        image_manifest(
            b"{}",
            [b"signature"],
            subject=descriptor(subject_data.data, OCI_MANIFEST),
            artifact_type="x/sig",
        ),
        None,
    )
    clock.advance(2 * HOUR)
    _collect(storage)
    assert [str(r.digest) for r in storage.referrers("app", subject)] == [str(signature)]
    storage.delete_tag("app", "v1")
    clock.advance(2 * HOUR)
    _collect(storage)
    assert storage.get_manifest("app", signature) is None
    assert storage.referrers("app", subject) == []
    assert storage.blob_size("app", Digest.of(b"signature")) is None


def test_pinned_untagged_manifest_survives(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    pinned = _image(storage, "app", None, b"pinned layer")
    storage.pin("app", pinned, "release 7")
    clock.advance(2 * HOUR)
    _collect(storage)
    assert storage.get_manifest("app", pinned) is not None
    assert storage.blob_size("app", Digest.of(b"pinned layer")) == 12
    storage.unpin("app", pinned)
    _collect(storage)
    assert storage.get_manifest("app", pinned) is None


def test_content_touched_after_planning_is_not_deleted(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    untagged = _image(storage, "app", None, b"layer")
    _blob(storage, "app", b"loose")
    clock.advance(2 * HOUR)
    plan = plan_gc(storage.inventory(), clock.now(), HOUR)
    assert ("app", untagged) in plan.manifests
    assert Digest.of(b"loose") in {digest for digest, _ in plan.blobs}
    # meanwhile: the manifest gets a tag and the loose blob is uploaded again
    data = storage.get_manifest("app", untagged)
    assert data is not None
    storage.put_manifest(
        "app", data.data, parse_manifest(data.data, OCI_MANIFEST), untagged, "late"
    )
    _blob(storage, "app", b"loose")
    result = apply_gc(storage, plan)
    assert result.skipped >= 2
    assert storage.get_manifest("app", "late") is not None
    assert storage.blob_size("app", Digest.of(b"layer")) == 5
    assert storage.blob_size("app", Digest.of(b"loose")) == 5


def test_dry_run_plan_changes_nothing(
    storage: FilesystemRegistryStorage, clock: ManualClock
) -> None:
    _image(storage, "app", None, b"layer")
    clock.advance(2 * HOUR)
    before = storage.inventory()
    plan = plan_gc(before, clock.now(), HOUR)
    assert plan.manifests
    assert storage.inventory() == before
