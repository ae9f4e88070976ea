"""Standby: the previous stable release's instances stay up, out of the router, for a while
after a rollout completes, so that ``berth rollback`` is a router switch (pure).

Argo Rollouts calls this the scale-down delay. Once the canary takes 100 % of the
traffic, the old stable release's instances are *parked* instead of stopped: the engine
hides them from the machine (which therefore sees the stable shrink to zero and
completes as before) and from the converger (which therefore neither stops nor routes
them). The environment's steady keeper goes on hiding them until ``standby`` has passed
since the rollout finished, then stops them like any other surplus. The window is
computed from the store (the rollout's phase, ``from_release_id`` and ``finished_at``),
so a restarted control plane parks and releases exactly the same instances.

A rollback or abort is never parked: its target must be seen, healthy, to take traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from pipeline.rollout.instances import ObservedInstance
from pipeline.rollout.model import Phase, RolloutState
from pipeline.store.rollouts import Rollout

__all__ = ["held_stable", "hide_surplus", "parked_after", "parked_during", "without"]

Observed = TypeVar("Observed", bound=ObservedInstance)


def parked_during(state: RolloutState, standby: timedelta) -> int | None:
    """The release parked while ``state``'s rollout runs: its former stable once the canary
    has all the traffic (the last step, or completed), else None."""
    if standby <= timedelta(0) or state.stable is None or state.canary is None:
        return None
    if state.stable == state.canary or state.phase in (Phase.ABORTED, Phase.ROLLED_BACK):
        return None
    if state.phase is Phase.COMPLETED or state.weight == 100:
        return state.stable
    return None


def held_stable(state: RolloutState, standby: timedelta) -> int | None:
    """The stable release kept at full size while ``state``'s rollout runs, so that it can
    be parked whole when the canary takes all the traffic: with standby on, the stable
    release is not shrunk as the canary grows (its extra instances share the stable
    release's traffic share; the split between releases is the router's weights)."""
    if standby <= timedelta(0) or state.stable is None or state.canary is None:
        return None
    if state.stable == state.canary or state.terminal:
        return None
    return state.stable


def hide_surplus(instances: Iterable[Observed], release: int, keep: int) -> list[Observed]:
    """``instances`` with only ``keep`` of ``release``'s (healthy ones first, then by id):
    the machine sees the held stable shrink as it asks, while the surplus runs on."""
    mine = sorted(
        (i for i in instances if i.release == release), key=lambda i: (not i.healthy, i.id)
    )
    shown = {i.id for i in mine[:keep]}
    return [i for i in instances if i.release != release or i.id in shown]


def parked_after(rollout: Rollout | None, now: datetime, standby: timedelta) -> int | None:
    """The release parked in an environment whose last rollout is ``rollout`` (finished),
    until ``standby`` after it completed; None otherwise."""
    if rollout is None or standby <= timedelta(0) or rollout.finished_at is None:
        return None
    if rollout.phase != str(Phase.COMPLETED) or rollout.from_release_id is None:
        return None
    if rollout.from_release_id == rollout.to_release_id:
        return None
    if now >= rollout.finished_at + standby:
        return None
    return rollout.from_release_id


def without(instances: Iterable[Observed], parked: int | None) -> list[Observed]:
    """``instances`` less those of the parked release."""
    return [i for i in instances if parked is None or i.release != parked]
