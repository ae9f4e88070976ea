"""Which release stands by for a rollback, during and after a rollout (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.rollout.instances import ObservedInstance
from pipeline.rollout.model import Phase, RolloutState, SetWeight
from pipeline.rollout.standby import held_stable, hide_surplus, parked_after, parked_during
from pipeline.store.rollouts import Rollout

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def state(phase: Phase, weight: int) -> RolloutState:
    return RolloutState(
        "app", "env", stable=1, replicas=2, steps=(SetWeight(100),), canary=2, phase=phase,
        weight=weight,
    )  # fmt: skip


def rollout(phase: str, finished: datetime | None) -> Rollout:
    return Rollout(
        id=1, app="app", env="env", from_release_id=1, to_release_id=2, phase=phase,
        step_index=0, weight=100, state={}, version=1, created_at=T0, updated_at=T0,
        finished_at=finished,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("phase", "weight", "parked"),
    [
        (Phase.PROGRESSING, 50, None),  # the stable still serves
        (Phase.PROGRESSING, 100, 1),  # the canary has all the traffic
        (Phase.COMPLETED, 100, 1),
        (Phase.ABORTED, 100, None),  # going back: the stable must be seen
        (Phase.ROLLED_BACK, 0, None),
    ],
)
def test_the_old_stable_is_parked_once_the_canary_has_all_traffic(
    phase: Phase, weight: int, parked: int | None
) -> None:
    assert parked_during(state(phase, weight), MINUTE) == parked
    assert parked_during(state(phase, weight), timedelta(0)) is None


def test_a_first_release_parks_nothing() -> None:
    assert parked_during(replace(state(Phase.COMPLETED, 100), stable=None), MINUTE) is None


def test_after_completion_the_old_stable_stands_by_for_the_window_only() -> None:
    done = rollout("completed", T0)
    assert parked_after(done, T0 + timedelta(seconds=59), MINUTE) == 1
    assert parked_after(done, T0 + MINUTE, MINUTE) is None
    assert parked_after(done, T0, timedelta(0)) is None
    assert parked_after(rollout("rolled_back", T0), T0, MINUTE) is None
    assert parked_after(rollout("aborted", T0), T0, MINUTE) is None
    assert parked_after(None, T0, MINUTE) is None


@pytest.mark.parametrize(
    ("phase", "held"),
    [(Phase.PROGRESSING, 1), (Phase.PAUSED, 1), (Phase.ABORTED, None), (Phase.COMPLETED, None)],
)
def test_the_stable_is_held_at_full_size_while_a_rollout_runs(
    phase: Phase, held: int | None
) -> None:
    assert held_stable(state(phase, 50), MINUTE) == held
    assert held_stable(state(phase, 50), timedelta(0)) is None


def observed(instance_id: str, release: int, health: str) -> ObservedInstance:
    return ObservedInstance(instance_id, "h1", release, "running", health, None)


def test_the_machine_sees_only_as_many_held_instances_as_it_asked_for() -> None:
    instances = [
        observed("a-r1-2", 1, "healthy"),
        observed("a-r1-0", 1, "unhealthy"),
        observed("a-r1-1", 1, "healthy"),
        observed("a-r2-0", 2, "starting"),
    ]
    shown = hide_surplus(instances, 1, 2)
    # healthy ones first, then by id; the canary is untouched
    assert [i.id for i in shown] == ["a-r1-2", "a-r1-1", "a-r2-0"]
    assert hide_surplus(instances, 1, 5) == instances
