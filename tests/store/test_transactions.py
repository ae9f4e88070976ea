"""Several operations in one transaction; connection failures reported as store errors."""

from __future__ import annotations

import pytest

from pipeline.store import ConflictError, NotFoundError, Store, StoreError
from tests.helpers.procs import free_port
from tests.store.samples import commit, digest

pytestmark = pytest.mark.integration


class Boom(Exception):
    pass


def test_a_transaction_commits_everything_together(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    release, _ = store.create_release("web", commit(1), digest(1), {})
    with store.transaction() as tx:
        tx.set_stable_release("web", "prod", release.id, pinned=True)
        event = tx.append_event(
            "alice", "rollback", source="cli:alice", app="web", env="prod", release_id=release.id
        )
        # reads inside the transaction see its own writes
        assert tx.get_environment("web", "prod").stable_release_id == release.id
    assert store.get_environment("web", "prod").pinned is True
    assert store.list_events() == [event]


def test_a_failing_transaction_changes_nothing(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    release, _ = store.create_release("web", commit(1), digest(1), {})

    def promote_then_fail() -> None:
        with store.transaction() as tx:
            tx.set_stable_release("web", "prod", release.id)
            tx.append_event("alice", "promote", source="cli:alice")
            tx.create_build("web", commit(2))
            raise Boom

    with pytest.raises(Boom):
        promote_then_fail()
    assert store.get_environment("web", "prod").stable_release_id is None
    assert store.list_events() == []
    assert store.list_builds() == []


def test_a_store_error_inside_a_transaction_rolls_it_back(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")

    def build_two_apps() -> None:
        with store.transaction() as tx:
            tx.create_build("web", commit(1))
            tx.create_build("api", commit(1))

    with pytest.raises(NotFoundError, match="unknown app 'api'"):
        build_two_apps()
    assert store.list_builds() == []


def test_a_refused_operation_can_be_handled_inside_the_transaction(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    release, _ = store.create_release("web", commit(1), digest(1), {})
    store.create_rollout("web", "prod", release.id, phase="progressing")
    with store.transaction() as tx:
        with pytest.raises(ConflictError):
            tx.create_rollout("web", "prod", release.id, phase="progressing")
        tx.append_event("berth", "rollout.refused", source="system:engine")
    assert [e.action for e in store.list_events()] == ["rollout.refused"]


def test_an_unreachable_postgresql_is_a_clear_store_error() -> None:
    url = f"postgresql://berth:s3cret-pw@127.0.0.1:{free_port()}/berth"
    with pytest.raises(StoreError, match="cannot connect to the state store") as caught:
        Store.open(url)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
