"""Approvals, hosts and webhook deliveries on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.store import FixedClock, InvalidInputError, NotFoundError, Release, Store
from tests.store.samples import commit, digest

pytestmark = pytest.mark.integration


@pytest.fixture
def release(store: Store) -> Release:
    store.upsert_app("web", "https://git.example/web.git", "main")
    return store.create_release("web", commit(1), digest(1), {})[0]


def test_approvals_are_unique_per_release_env_and_approver(
    store: Store, release: Release, clock: FixedClock
) -> None:
    carol, added = store.add_approval(release.id, "prod", "carol", comment="looks good")
    again, added_again = store.add_approval(release.id, "prod", "carol")
    dave, _ = store.add_approval(release.id, "prod", "dave")
    store.add_approval(release.id, "pre-prod", "carol")

    assert (added, added_again) == (True, False)
    assert again == carol
    assert carol.comment == "looks good"
    assert [a.approver for a in store.list_approvals(release.id, "prod")] == ["carol", "dave"]
    assert dave.created_at == clock.now()


def test_lapsed_approvals_stop_counting_until_renewed(
    store: Store, release: Release, clock: FixedClock
) -> None:
    newer, _ = store.create_release("web", commit(2), digest(2), {})
    store.add_approval(release.id, "prod", "carol")
    store.add_approval(release.id, "prod", "dave")
    store.add_approval(newer.id, "prod", "erin")
    store.add_approval(release.id, "pre-prod", "carol")

    clock.advance(60)
    assert store.lapse_approvals("web", "prod", release_id=release.id) == 2
    assert store.list_approvals(release.id, "prod") == []
    lapsed = store.list_approvals(release.id, "prod", include_lapsed=True)
    assert [(a.approver, a.lapsed_at) for a in lapsed] == [
        ("carol", clock.now()),
        ("dave", clock.now()),
    ]
    assert [a.approver for a in store.list_approvals(newer.id, "prod")] == ["erin"]
    assert len(store.list_approvals(release.id, "pre-prod")) == 1

    clock.advance(60)
    renewed, counted = store.add_approval(release.id, "prod", "carol", comment="again")
    assert counted is True
    assert (renewed.active, renewed.comment, renewed.created_at) == (True, "again", clock.now())
    assert renewed.id == lapsed[0].id

    assert store.lapse_approvals("web", "prod") == 2  # carol's renewal and erin
    assert store.lapse_approvals("web", "prod") == 0


def test_bad_approval_input(store: Store, release: Release) -> None:
    with pytest.raises(NotFoundError, match="unknown release 404"):
        store.add_approval(404, "prod", "carol")
    with pytest.raises(InvalidInputError, match="approver must not be empty"):
        store.add_approval(release.id, "prod", "  ")
    with pytest.raises(InvalidInputError, match="release id must be an integer"):
        store.list_approvals("1", "prod")  # type: ignore[arg-type]
    assert store.list_approvals(release.id, "prod", include_lapsed=True) == []


def test_hosts_register_update_and_heartbeat(store: Store, clock: FixedClock) -> None:
    host = store.upsert_host("host-1", "10.88.0.2:7070", {"zone": "a", "disk": "ssd"})
    store.upsert_host("host-0", "[fd00::2]:7070", {})
    assert (host.labels, host.last_heartbeat, host.created_at) == (
        {"zone": "a", "disk": "ssd"}, None, clock.now(),
    )  # fmt: skip

    clock.advance(15)
    beat = store.record_heartbeat("host-1")
    assert beat.last_heartbeat == clock.now()
    explicit = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)
    assert store.record_heartbeat("host-1", at=explicit).last_heartbeat == explicit

    moved = store.upsert_host("host-1", "10.88.0.9:7070", {"zone": "b"})
    assert (moved.address, moved.labels, moved.last_heartbeat) == (
        "10.88.0.9:7070", {"zone": "b"}, explicit,
    )  # fmt: skip
    assert moved.created_at == host.created_at
    assert [h.name for h in store.list_hosts()] == ["host-0", "host-1"]

    assert store.remove_host("host-0") is True
    assert store.remove_host("host-0") is False
    with pytest.raises(NotFoundError, match="unknown host 'host-0'"):
        store.get_host("host-0")
    with pytest.raises(NotFoundError, match="unknown host 'ghost'"):
        store.record_heartbeat("ghost")


def test_bad_host_input(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="labels map non-empty strings to strings"):
        store.upsert_host("h", "10.0.0.1:7070", {"cores": 4})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="host address must not be empty"):
        store.upsert_host("h", "", {})
    store.upsert_host("h", "10.0.0.1:7070", {})
    with pytest.raises(InvalidInputError, match="aware datetime"):
        store.record_heartbeat("h", at=datetime(2026, 1, 1))
    assert store.get_host("h").last_heartbeat is None


def test_deliveries_are_seen_once_per_provider(store: Store, clock: FixedClock) -> None:
    assert store.record_delivery("github", "72d3162e") is True
    assert store.record_delivery("github", "72d3162e") is False
    assert store.record_delivery("gitlab", "72d3162e") is True
    clock.advance(timedelta(days=2))
    assert store.record_delivery("github", "second") is True

    assert store.forget_deliveries(clock.now() - timedelta(days=1)) == 2
    assert store.record_delivery("github", "72d3162e") is True  # forgotten, so new again
    assert store.record_delivery("github", "second") is False
    with pytest.raises(InvalidInputError, match="delivery id must not be empty"):
        store.record_delivery("github", "")
