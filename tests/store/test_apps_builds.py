"""Apps and builds on both backends."""

from __future__ import annotations

import pytest

from pipeline.store import (
    BuildState,
    ConflictError,
    FixedClock,
    InvalidInputError,
    NotFoundError,
    Store,
    StoreError,
)
from tests.store.samples import commit, digest

pytestmark = pytest.mark.integration


@pytest.fixture
def web(store: Store) -> str:
    store.upsert_app("web", "https://git.example/web.git", "main")
    return "web"


def test_upsert_app_registers_then_updates(store: Store, clock: FixedClock) -> None:
    first = store.upsert_app("web", "https://git.example/web.git", "main")
    created_at = clock.now()
    clock.advance(60)
    second = store.upsert_app("web", "https://git.example/web2.git", "release")
    store.upsert_app("api", "https://git.example/api.git", "main")

    assert first.created_at == created_at
    assert (second.repo, second.branch) == ("https://git.example/web2.git", "release")
    assert second.created_at == created_at
    assert second.updated_at == clock.now()
    assert store.get_app("web") == second
    assert [app.name for app in store.list_apps()] == ["api", "web"]


@pytest.mark.parametrize("name", ["", "Web", "-web", "web app", "a" * 101, "web/x"])
def test_bad_app_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid app name"):
        store.upsert_app(name, "https://git.example/web.git", "main")
    assert store.list_apps() == []


def test_unknown_apps_are_a_clear_store_error(store: Store) -> None:
    with pytest.raises(NotFoundError, match="unknown app 'ghost'") as caught:
        store.create_build("ghost", commit(1))
    assert isinstance(caught.value, StoreError)
    with pytest.raises(NotFoundError, match="unknown app 'ghost'"):
        store.get_app("ghost")
    with pytest.raises(NotFoundError, match="unknown app 'ghost'"):
        store.list_releases("ghost")
    assert store.list_builds() == []


def test_one_build_per_app_and_commit(store: Store, web: str) -> None:
    first, created = store.create_build(web, commit(1))
    again, created_again = store.create_build(web, commit(1))
    other, created_other = store.create_build(web, commit(2))

    assert (created, created_again, created_other) == (True, False, True)
    assert again == first
    assert first.state is BuildState.QUEUED
    assert other.id > first.id
    assert store.find_build(web, commit(1)) == first
    assert store.find_build(web, commit(3)) is None
    assert [b.commit for b in store.list_builds(web)] == [commit(2), commit(1)]


@pytest.mark.parametrize("bad", ["main", "abc123", commit(1).upper(), commit(1)[:39], ""])
def test_builds_need_full_commit_ids(store: Store, web: str, bad: str) -> None:
    with pytest.raises(InvalidInputError, match="full commit id"):
        store.create_build(web, bad)


def test_sha256_commit_ids_are_accepted(store: Store, web: str) -> None:
    build, _ = store.create_build(web, "ab" * 32)
    assert build.commit == "ab" * 32


def test_claim_takes_the_oldest_queued_build(store: Store, web: str, clock: FixedClock) -> None:
    store.upsert_app("api", "https://git.example/api.git", "main")
    old, _ = store.create_build(web, commit(1))
    api, _ = store.create_build("api", commit(2))
    new, _ = store.create_build(web, commit(3))
    clock.advance(5)

    claimed = store.claim_next_build("worker-1")
    assert claimed is not None
    assert (claimed.id, claimed.state, claimed.worker) == (old.id, BuildState.RUNNING, "worker-1")
    assert claimed.started_at == clock.now()

    only_web = store.claim_next_build("worker-2", apps=[web])
    assert only_web is not None
    assert only_web.id == new.id
    last = store.claim_next_build("worker-3")
    assert last is not None
    assert last.id == api.id
    assert store.claim_next_build("worker-1") is None


def test_build_lifecycle_records_times_reason_and_digest(
    store: Store, web: str, clock: FixedClock
) -> None:
    build, _ = store.create_build(web, commit(1))
    store.claim_next_build("w")
    clock.advance(30)
    done = store.set_build_state(build.id, "succeeded", digest=digest(1), reason="built in 30s")
    assert (done.state, done.digest, done.reason) == (
        BuildState.SUCCEEDED,
        digest(1),
        "built in 30s",
    )
    assert done.finished_at == clock.now()
    assert store.get_build(build.id) == done
    assert store.list_builds(state="succeeded") == [done]
    assert store.list_builds(state=BuildState.QUEUED) == []


def test_failed_builds_can_be_queued_again_and_forget_their_run(store: Store, web: str) -> None:
    build, _ = store.create_build(web, commit(1))
    store.claim_next_build("w")
    failed = store.set_build_state(build.id, BuildState.FAILED, reason="RUN step 3 exited 1")
    assert failed.reason == "RUN step 3 exited 1"
    assert failed.finished_at is not None

    again = store.set_build_state(build.id, BuildState.QUEUED, reason="retry")
    assert (again.state, again.worker, again.started_at, again.finished_at) == (
        BuildState.QUEUED, None, None, None,
    )  # fmt: skip


def test_impossible_build_transitions_are_conflicts(store: Store, web: str) -> None:
    build, _ = store.create_build(web, commit(1))
    with pytest.raises(ConflictError, match="is queued; it cannot become succeeded"):
        store.set_build_state(build.id, "succeeded", digest=digest(1))
    store.claim_next_build("w")
    store.set_build_state(build.id, "succeeded", digest=digest(1))
    with pytest.raises(ConflictError, match="may become: nothing"):
        store.set_build_state(build.id, "queued")
    assert store.get_build(build.id).state is BuildState.SUCCEEDED


def test_bad_build_state_arguments(store: Store, web: str) -> None:
    build, _ = store.create_build(web, commit(1))
    store.claim_next_build("w")
    with pytest.raises(InvalidInputError, match="unknown build state 'done'"):
        store.set_build_state(build.id, "done")
    with pytest.raises(InvalidInputError, match="needs the digest"):
        store.set_build_state(build.id, "succeeded")
    with pytest.raises(InvalidInputError, match="invalid sha256 digest"):
        store.set_build_state(build.id, "succeeded", digest="sha256:abc")
    with pytest.raises(InvalidInputError, match="only a succeeded build"):
        store.set_build_state(build.id, "failed", digest=digest(1))
    with pytest.raises(NotFoundError, match="unknown build 999"):
        store.set_build_state(999, "failed")
    with pytest.raises(InvalidInputError, match="limit"):
        store.list_builds(limit=0)
    assert store.get_build(build.id).state is BuildState.RUNNING


def test_interrupting_running_builds_at_start_up(store: Store, web: str) -> None:
    a, _ = store.create_build(web, commit(1))
    b, _ = store.create_build(web, commit(2))
    c, _ = store.create_build(web, commit(3))
    store.claim_next_build("old-life")
    store.claim_next_build("other")

    interrupted = store.interrupt_running_builds("control plane restarted", worker="old-life")
    assert [(x.id, x.state, x.reason) for x in interrupted] == [
        (a.id, BuildState.INTERRUPTED, "control plane restarted")
    ]
    assert store.get_build(b.id).state is BuildState.RUNNING
    assert [x.id for x in store.interrupt_running_builds("restart")] == [b.id]
    assert store.get_build(c.id).state is BuildState.QUEUED
    assert store.interrupt_running_builds("restart") == []


def test_list_builds_pages_newest_first(store: Store, web: str) -> None:
    ids = [store.create_build(web, commit(n))[0].id for n in range(5)]
    page = store.list_builds(web, limit=2)
    assert [b.id for b in page] == ids[:-3:-1]
    rest = store.list_builds(web, limit=10, before_id=page[-1].id)
    assert [b.id for b in rest] == ids[-3::-1]
