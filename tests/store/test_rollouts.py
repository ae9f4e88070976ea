"""Rollouts: one active per environment, compare-and-set updates, history."""

from __future__ import annotations

import pytest

from pipeline.store import (
    ConflictError,
    FixedClock,
    InvalidInputError,
    NotFoundError,
    Release,
    Store,
)
from tests.store.samples import commit, digest

pytestmark = pytest.mark.integration


@pytest.fixture
def releases(store: Store) -> list[Release]:
    store.upsert_app("web", "https://git.example/web.git", "main")
    return [store.create_release("web", commit(n), digest(n), {})[0] for n in range(3)]


def test_create_then_advance_with_compare_and_set(
    store: Store, releases: list[Release], clock: FixedClock
) -> None:
    rollout = store.create_rollout(
        "web",
        "prod",
        releases[1].id,
        from_release_id=releases[0].id,
        phase="progressing",
        state={"steps": [{"weight": 10}, {"pause": "2m"}, {"weight": 100}]},
    )
    assert (rollout.version, rollout.step_index, rollout.weight, rollout.active) == (1, 0, 0, True)
    assert rollout.created_at == clock.now()

    clock.advance(30)
    moved = store.update_rollout(rollout.id, expected_version=1, step_index=1, weight=10)
    assert (moved.version, moved.step_index, moved.weight) == (2, 1, 10)
    assert moved.phase == "progressing"  # fields not given stay
    assert moved.state == rollout.state
    assert moved.updated_at == clock.now()

    with pytest.raises(ConflictError, match="at version 2, this update expected 1"):
        store.update_rollout(rollout.id, expected_version=1, weight=50)
    assert store.get_rollout(rollout.id) == moved

    done = store.update_rollout(
        rollout.id, expected_version=2, phase="succeeded", weight=100, finished=True
    )
    assert (done.version, done.active, done.finished_at) == (3, False, clock.now())
    with pytest.raises(ConflictError, match="finished"):
        store.update_rollout(rollout.id, expected_version=3, weight=0)


def test_one_unfinished_rollout_per_environment(store: Store, releases: list[Release]) -> None:
    first = store.create_rollout("web", "prod", releases[1].id, phase="progressing")
    with pytest.raises(ConflictError, match=f"unfinished rollout \\(rollout {first.id}\\)"):
        store.create_rollout("web", "prod", releases[2].id, phase="progressing")
    other_env = store.create_rollout("web", "dev", releases[2].id, phase="progressing")
    assert other_env.env == "dev"

    store.update_rollout(first.id, expected_version=1, phase="aborted", finished=True)
    second = store.create_rollout("web", "prod", releases[2].id, phase="progressing")
    assert store.get_current_rollout("web", "prod") == second
    assert [r.id for r in store.list_rollouts("web", "prod")] == [second.id, first.id]
    assert [r.id for r in store.list_rollouts("web")] == [second.id, other_env.id, first.id]
    assert [r.id for r in store.list_active_rollouts()] == [other_env.id, second.id]


def test_bad_rollout_input(store: Store, releases: list[Release]) -> None:
    with pytest.raises(InvalidInputError, match="weight must be an integer from 0 to 100"):
        store.create_rollout("web", "prod", releases[0].id, phase="progressing", weight=101)
    with pytest.raises(InvalidInputError, match="invalid rollout phase"):
        store.create_rollout("web", "prod", releases[0].id, phase="Progressing!")
    with pytest.raises(InvalidInputError, match="step index"):
        store.create_rollout("web", "prod", releases[0].id, phase="progressing", step_index=-1)
    with pytest.raises(NotFoundError, match="unknown release 77"):
        store.create_rollout("web", "prod", 77, phase="progressing")
    assert store.get_current_rollout("web", "prod") is None

    rollout = store.create_rollout("web", "prod", releases[0].id, phase="progressing")
    with pytest.raises(InvalidInputError, match="weight"):
        store.update_rollout(rollout.id, expected_version=1, weight=-5)
    with pytest.raises(NotFoundError, match="unknown rollout 999"):
        store.update_rollout(999, expected_version=1, weight=5)
    with pytest.raises(NotFoundError, match="unknown rollout 999"):
        store.get_rollout(999)
    assert store.get_rollout(rollout.id).version == 1
