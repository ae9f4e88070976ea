"""Releases and environment state (stable release, pin, lock) on both backends."""

from __future__ import annotations

import pytest

from pipeline.store import (
    ConflictError,
    FixedClock,
    InvalidInputError,
    LockedError,
    NotFoundError,
    Release,
    Store,
)
from tests.store.samples import commit, digest

pytestmark = pytest.mark.integration

SPEC = {"run": {"port": 8080, "health": {"http": "/healthz"}}, "replicas": 2}


@pytest.fixture
def releases(store: Store) -> list[Release]:
    store.upsert_app("web", "https://git.example/web.git", "main")
    store.upsert_app("api", "https://git.example/api.git", "main")
    made = [
        store.create_release("web", commit(n), digest(n), SPEC, author=f"dev{n}")[0]
        for n in range(3)
    ]
    made.append(store.create_release("api", commit(9), digest(9), {})[0])
    return made


def test_create_release_records_everything(store: Store, clock: FixedClock) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    release, created = store.create_release(
        "web", commit(1), digest(1), SPEC, author="Ann <ann@example.test>", message="fix: ünïcode"
    )
    assert created is True
    assert (release.app, release.commit, release.digest) == ("web", commit(1), digest(1))
    assert release.spec == SPEC
    assert (release.author, release.message) == ("Ann <ann@example.test>", "fix: ünïcode")
    assert release.created_at == clock.now()
    assert store.get_release(release.id) == release
    assert store.find_release("web", commit(1)) == release


def test_recording_a_release_again_returns_it_and_another_digest_is_a_conflict(
    store: Store,
) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    first, _ = store.create_release("web", commit(1), digest(1), SPEC)
    again, created = store.create_release("web", commit(1), digest(1), {"other": True})
    assert (again, created) == (first, False)
    with pytest.raises(ConflictError, match=r"already released as sha256:") as caught:
        store.create_release("web", commit(1), digest(2), SPEC)
    assert digest(2) in str(caught.value)
    assert [r.digest for r in store.list_releases("web")] == [digest(1)]


def test_the_spec_is_a_snapshot(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    spec: dict[str, object] = {"replicas": 2}
    release, _ = store.create_release("web", commit(1), digest(1), spec)
    spec["replicas"] = 5
    assert release.spec == {"replicas": 2}
    assert store.get_release(release.id).spec == {"replicas": 2}


def test_bad_release_input(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    with pytest.raises(InvalidInputError, match="invalid digest"):
        store.create_release("web", commit(1), "latest", SPEC)
    with pytest.raises(InvalidInputError, match="not JSON-serialisable"):
        store.create_release("web", commit(1), digest(1), {"when": object()})
    with pytest.raises(InvalidInputError, match="not JSON-serialisable"):
        store.create_release("web", commit(1), digest(1), {"ratio": float("nan")})
    with pytest.raises(NotFoundError, match="unknown app 'nope'"):
        store.create_release("nope", commit(1), digest(1), SPEC)
    with pytest.raises(NotFoundError, match="unknown release 42"):
        store.get_release(42)
    assert store.list_releases("web") == []


def test_list_releases_newest_first_per_app(store: Store, releases: list[Release]) -> None:
    assert [r.id for r in store.list_releases("web")] == [r.id for r in releases[2::-1]]
    assert [r.id for r in store.list_releases("web", limit=1, before_id=releases[2].id)] == [
        releases[1].id
    ]
    assert [r.app for r in store.list_releases("api")] == ["api"]


def test_stable_release_history_for_rollback(
    store: Store, releases: list[Release], clock: FixedClock
) -> None:
    empty = store.get_environment("web", "prod")
    assert (empty.stable_release_id, empty.pinned, empty.lock, empty.updated_at) == (
        None, False, None, None,
    )  # fmt: skip

    first = store.set_stable_release("web", "prod", releases[0].id)
    assert (first.stable_release_id, first.previous_release_id) == (releases[0].id, None)
    clock.advance(10)
    second = store.set_stable_release("web", "prod", releases[1].id)
    assert (second.stable_release_id, second.previous_release_id) == (
        releases[1].id, releases[0].id,
    )  # fmt: skip
    assert second.updated_at == clock.now()

    # Setting the same release again keeps the previous one (rollback still has a target).
    same = store.set_stable_release("web", "prod", releases[1].id)
    assert same.previous_release_id == releases[0].id

    rolled_back = store.set_stable_release("web", "prod", releases[0].id, pinned=True)
    assert (rolled_back.stable_release_id, rolled_back.previous_release_id) == (
        releases[0].id, releases[1].id,
    )  # fmt: skip
    assert rolled_back.pinned is True
    assert store.set_pinned("web", "prod", False).pinned is False
    assert store.get_environment("web", "prod").stable_release_id == releases[0].id


def test_an_environment_only_takes_its_own_apps_releases(
    store: Store, releases: list[Release]
) -> None:
    with pytest.raises(InvalidInputError, match="belongs to app 'api', not 'web'"):
        store.set_stable_release("web", "dev", releases[3].id)
    with pytest.raises(NotFoundError, match="unknown release 999"):
        store.set_stable_release("web", "dev", 999)
    with pytest.raises(InvalidInputError, match="invalid environment name"):
        store.set_stable_release("web", "Dev Env", releases[0].id)
    assert store.list_environments("web") == []


def test_locks_belong_to_their_holder(
    store: Store, releases: list[Release], clock: FixedClock
) -> None:
    locked = store.lock_environment("web", "prod", "alice", "release freeze")
    assert locked.lock is not None
    assert (locked.lock.holder, locked.lock.reason, locked.lock.since) == (
        "alice", "release freeze", clock.now(),
    )  # fmt: skip
    assert locked.stable_release_id is None  # a lock needs nothing deployed

    clock.advance(5)
    relocked = store.lock_environment("web", "prod", "alice", "freeze until Monday")
    assert relocked.lock is not None
    assert relocked.lock.reason == "freeze until Monday"
    assert relocked.lock.since == locked.lock.since

    with pytest.raises(LockedError, match="locked by alice") as caught:
        store.lock_environment("web", "prod", "bob", "hotfix")
    assert (caught.value.holder, caught.value.reason) == ("alice", "freeze until Monday")
    with pytest.raises(LockedError, match="locked by alice"):
        store.unlock_environment("web", "prod", holder="bob")
    assert store.get_environment("web", "prod").locked

    assert store.unlock_environment("web", "prod", holder="alice") is True
    assert store.unlock_environment("web", "prod") is False
    store.lock_environment("web", "prod", "bob", "hotfix")
    assert store.unlock_environment("web", "prod") is True  # by force
    assert not store.get_environment("web", "prod").locked


def test_list_environments_includes_locked_only_ones(store: Store, releases: list[Release]) -> None:
    store.set_stable_release("web", "dev", releases[0].id)
    store.lock_environment("web", "prod", "alice", "")
    store.set_stable_release("api", "dev", releases[3].id)
    listed = store.list_environments("web")
    assert [(e.env, e.stable_release_id, e.locked) for e in listed] == [
        ("dev", releases[0].id, False),
        ("prod", None, True),
    ]
