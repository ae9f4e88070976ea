"""Reading one app's chain from the store into :class:`~pipeline.promote.policy.AppFacts`.

The store keeps stable releases, locks, pins, rollouts and approvals in tables; what
happened to a release *in* an environment (it entered, its gate ran) is in the event log,
with these actions (written by :mod:`pipeline.promote.service`):

- ``release.promoted``  a promotion into ``env`` started (``detail.forced``, ``detail.from_env``)
- ``release.entered``   ``release_id`` reached 100 % in ``env``
- ``gate.started`` / ``gate.passed`` / ``gate.failed`` / ``gate.errored``
  a gate run of ``release_id`` in ``env`` (``detail.gate``, ``detail.message``)

Only the newest :data:`EVENT_WINDOW` events of each environment are read, so a very long
history costs a bounded query; releases older than that no longer count as candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.promote.policy import AppFacts, EnvFacts, GateRecord, GateStatus, LockFacts
from pipeline.settings import Environment
from pipeline.store import Store
from pipeline.store.events import Event

__all__ = ["EVENT_WINDOW", "GATE_ACTIONS", "app_facts", "env_facts"]

EVENT_WINDOW = 500

GATE_ACTIONS: dict[str, GateStatus] = {
    "gate.started": "running",
    "gate.passed": "passed",
    "gate.failed": "failed",
    "gate.errored": "errored",
}


def env_facts(store: Store, app: str, environment: Environment) -> EnvFacts:
    """The policy's view of ``environment`` of ``app``, read from ``store``."""
    env = environment.name
    state = store.get_environment(app, env)
    rollout = store.get_current_rollout(app, env)
    rolling_to = rollout.to_release_id if rollout is not None and rollout.active else None
    events = store.list_events(app=app, env=env, limit=EVENT_WINDOW, newest_first=True)
    gates, entered = _from_events(events)
    approvals: dict[int, tuple[str, ...]] = {}
    if state.stable_release_id is not None:
        given = store.list_approvals(state.stable_release_id, env)
        if given:
            approvals[state.stable_release_id] = tuple(a.approver for a in given)
    lock = None if state.lock is None else LockFacts(state.lock.holder, state.lock.reason)
    return EnvFacts(
        name=env,
        gate=environment.gate,
        approvals_required=environment.approval.required,
        approvers=tuple(environment.approval.approvers),
        auto_promote=environment.auto_promote,
        stable_release=state.stable_release_id,
        rolling_to=rolling_to,
        pinned=state.pinned,
        lock=lock,
        entered=frozenset(entered),
        gates=gates,
        approvals=approvals,
    )


def app_facts(store: Store, app: str, chain: Sequence[Environment]) -> AppFacts:
    """The policy's view of every environment of ``app``, in chain order."""
    return AppFacts(app, tuple(env_facts(store, app, environment) for environment in chain))


def _from_events(events: Sequence[Event]) -> tuple[dict[int, GateRecord], set[int]]:
    """Newest-first events -> the latest gate record per release, and the releases that
    entered."""
    gates: dict[int, GateRecord] = {}
    entered: set[int] = set()
    for event in events:
        if event.release_id is None:
            continue
        if event.action == "release.entered":
            entered.add(event.release_id)
        status = GATE_ACTIONS.get(event.action)
        if status is not None and event.release_id not in gates:
            message = event.detail.get("message", "")
            gates[event.release_id] = GateRecord(status, str(message))
    return gates, entered
