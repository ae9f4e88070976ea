"""Where the dashboard's data comes from: the :class:`DashboardSource` protocol and its
implementation over the state store.

:class:`StoreDashboardSource` reads the store (apps, environments, rollouts, builds,
hosts, the event log). What the store does not know comes from optional collaborators,
each a small protocol so the page works with whatever a control plane has:

- a :class:`~pipeline.promote.service.PromotionService`: the chain's order, gate states,
  approvals, what waits to be promoted, and promotion history;
- :class:`TrafficCounters`: the router's per-release connection counts;
- :class:`HostInventory`: the instances each host's agent reports;
- :class:`~pipeline.queue.logs.BuildLogs`: build logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from pipeline.errors import BerthError
from pipeline.promote import views
from pipeline.promote.service import PromotionService
from pipeline.queue.logs import BuildLogs
from pipeline.rollout.codec import state_from_json
from pipeline.rollout.errors import RolloutError
from pipeline.rollout.model import Analysis, Pause, RolloutState, SetWeight
from pipeline.store import (
    Build,
    Clock,
    EnvironmentState,
    NotFoundError,
    Release,
    Rollout,
    Store,
    SystemClock,
)
from pipeline.web.model import (
    ApprovalView,
    BuildLogView,
    BuildView,
    Cell,
    DashboardData,
    GateView,
    HistoryEntry,
    HostView,
    InstanceView,
    LockView,
    ReleaseRef,
    RolloutView,
    TrafficShare,
)
from runners.errors import RunnerError

__all__ = [
    "DashboardSource",
    "HostInventory",
    "StoreDashboardSource",
    "TrafficCounters",
    "describe_step",
]

# Terminal colour codes some build tools write; a web page shows them as noise.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class DashboardSource(Protocol):
    """What the dashboard reads. Implementations must be safe to call from several
    threads at once (every open page polls)."""

    def snapshot(self) -> DashboardData:
        """Everything the page shows, now."""
        ...

    def latest_event_id(self) -> int:
        """The id of the newest event-log entry (0 when empty): a cheap way to learn
        that something happened since the last snapshot."""
        ...

    def build_log(self, build_id: int) -> BuildLogView | None:
        """Build ``build_id`` and the tail of its log; None when there is no such build."""
        ...


class TrafficCounters(Protocol):
    """The router's counters of (app, environment): new connections per release id."""

    def connections(self, app: str, env: str) -> Mapping[int, int]: ...


class HostInventory(Protocol):
    """Instances per host name, as the agents last reported them."""

    def instances(self) -> Mapping[str, Sequence[InstanceView]]: ...


def describe_step(state: RolloutState) -> str:
    """The current step in words: ``set weight 40 %``, ``pause 2m0s``, ``analysis 3/12``."""
    step = state.current_step
    if step is None:
        return "done"
    if isinstance(step, SetWeight):
        return f"set weight {step.weight} %"
    if isinstance(step, Pause):
        if step.duration is None:
            return "paused until resumed"
        return f"pause {_duration(step.duration)}"
    assert isinstance(step, Analysis)
    progress = state.analysis
    if progress is None:
        return "analysis"
    planned = max(1, step.window // step.interval)
    text = f"analysis {progress.measurements}/{planned}"
    return text + (f", {progress.failures} failed" if progress.failures else "")


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class StoreDashboardSource:
    """The dashboard's data read from the state store (see the module docstring).

    ``environments`` gives the chain's order when no promotion service does; environments
    found in the store but in neither list are shown after them, by name.
    """

    def __init__(
        self,
        store: Store,
        *,
        promotion: PromotionService | None = None,
        environments: Sequence[str] = (),
        logs: BuildLogs | None = None,
        traffic: TrafficCounters | None = None,
        inventory: HostInventory | None = None,
        clock: Clock | None = None,
        stale_after: timedelta = timedelta(seconds=30),
        builds_shown: int = 20,
        history_shown: int = 8,
        log_tail: int = 256 * 1024,
    ) -> None:
        self._store = store
        self._promotion = promotion
        self._environments = tuple(environments)
        self._logs = logs
        self._traffic = traffic
        self._inventory = inventory
        self._clock = clock or SystemClock()
        self._stale_after = stale_after
        self._builds_shown = builds_shown
        self._history_shown = history_shown
        self._log_tail = log_tail

    # --- the protocol ---------------------------------------------------------------

    def latest_event_id(self) -> int:
        newest = self._store.list_events(newest_first=True, limit=1)
        return newest[0].id if newest else 0

    def snapshot(self) -> DashboardData:
        # Read the cursor first: an event appended while we read is then seen again on
        # the next poll rather than missed.
        last_event_id = self.latest_event_id()
        releases = _Releases(self._store)
        notes: list[str] = []
        apps = tuple(app.name for app in self._store.list_apps())
        states = {app: self._store.list_environments(app) for app in apps}
        chain = self._chain(states)
        # one read of the active rollouts for the cells and the rollout list (at most one
        # per app and environment: the store's unique index)
        active = self._store.list_active_rollouts()
        active_ids = {(r.app, r.env): r.id for r in active}
        cells = tuple(
            cell
            for app in apps
            for cell in self._cells(app, chain, states[app], releases, notes, active_ids)
        )
        rollouts = tuple(self._rollout(r, releases, notes) for r in active)
        history = tuple(
            entry for app in apps for env in chain for entry in self._history(app, env, releases)
        )
        return DashboardData(
            generated_at=self._clock.now(),
            apps=apps,
            environments=chain,
            cells=cells,
            rollouts=rollouts,
            history=history,
            builds=tuple(_build(b) for b in self._store.list_builds(limit=self._builds_shown)),
            hosts=self._hosts(notes),
            last_event_id=last_event_id,
            notes=tuple(notes),
        )

    def build_log(self, build_id: int) -> BuildLogView | None:
        try:
            build = self._store.get_build(build_id)
        except NotFoundError:
            return None
        if self._logs is None:
            return BuildLogView(_build(build), "", 0, False)
        size = self._logs.size(build_id)
        offset = max(0, size - self._log_tail)
        text = self._logs.read(build_id, offset, self._log_tail).decode("utf-8", "replace")
        if offset > 0:
            # the tail starts mid-line: drop that partial line
            text = text.partition("\n")[2]
        return BuildLogView(_build(build), _ANSI.sub("", text), size, offset > 0)

    # --- the parts ------------------------------------------------------------------

    def _chain(self, states: Mapping[str, Sequence[EnvironmentState]]) -> tuple[str, ...]:
        if self._promotion is not None:
            ordered = [e.name for e in self._promotion.settings.environments]
        else:
            ordered = list(self._environments)
        seen = {s.env for found in states.values() for s in found}
        return (*ordered, *sorted(seen - set(ordered)))

    def _cells(
        self,
        app: str,
        chain: Sequence[str],
        states: Sequence[EnvironmentState],
        releases: _Releases,
        notes: list[str],
        active_ids: dict[tuple[str, str], int],
    ) -> list[Cell]:
        by_env = {state.env: state for state in states}
        status = self._status(app, notes)
        cells: list[Cell] = []
        for env in chain:
            state = by_env.get(env)
            cell = Cell(app=app, env=env, rollout_id=active_ids.get((app, env)))
            if state is not None:
                cell = replace(
                    cell,
                    stable=releases.ref(state.stable_release_id),
                    previous=releases.ref(state.previous_release_id),
                    pinned=state.pinned,
                    lock=None
                    if state.lock is None
                    else LockView(state.lock.holder, state.lock.reason, state.lock.since),
                )
            cells.append(_with_status(cell, status.get(env)))
        return cells

    def _status(self, app: str, notes: list[str]) -> dict[str, dict[str, Any]]:
        if self._promotion is None:
            return {}
        try:
            return {row["env"]: row for row in views.status(self._promotion, app)}
        except BerthError as exc:
            notes.append(f"{app}: gate and approval state unavailable: {exc}")
            return {}

    def _rollout(self, rollout: Rollout, releases: _Releases, notes: list[str]) -> RolloutView:
        canary = releases.ref(rollout.to_release_id)
        assert canary is not None
        stable = releases.ref(rollout.from_release_id)
        counts = self._connections(rollout, notes)
        view = RolloutView(
            id=rollout.id,
            app=rollout.app,
            env=rollout.env,
            phase=rollout.phase,
            step=rollout.step_index + 1,
            steps=0,
            step_label="",
            weight=rollout.weight,
            canary=canary,
            stable=stable,
            updated_at=rollout.updated_at,
        )
        try:
            state = state_from_json(rollout.state)
        except RolloutError:
            # a state this berth cannot read (or none yet): the store's columns still tell
            # the weight, so show the two releases by it
            shares = [TrafficShare(rollout.to_release_id, "canary", rollout.weight)]
            if rollout.from_release_id is not None:
                shares.insert(
                    0, TrafficShare(rollout.from_release_id, "stable", 100 - rollout.weight)
                )
            return replace(view, shares=tuple(_count(s, counts) for s in shares))
        shares = []
        for allocation in state.allocations:
            health = state.observed.of(allocation.release) if state.observed else None
            role = (
                "canary"
                if allocation.release == state.canary
                else "stable"
                if allocation.release == state.stable
                else "old"
            )
            share = TrafficShare(
                release=allocation.release,
                role=role,
                weight=allocation.weight,
                replicas=allocation.replicas,
                running=health.running if health else 0,
                healthy=health.healthy if health else 0,
                failed=health.failed if health else 0,
            )
            shares.append(_count(share, counts))
        return replace(
            view,
            step=min(state.step_index + 1, len(state.steps)),
            steps=len(state.steps),
            step_label=describe_step(state),
            shares=tuple(shares),
            failure=state.failure,
        )

    def _connections(self, rollout: Rollout, notes: list[str]) -> Mapping[int, int]:
        if self._traffic is None:
            return {}
        try:
            return self._traffic.connections(rollout.app, rollout.env)
        except (BerthError, RunnerError) as exc:
            notes.append(f"{rollout.app}/{rollout.env}: router counters unavailable: {exc}")
            return {}

    def _history(self, app: str, env: str, releases: _Releases) -> list[HistoryEntry]:
        if self._promotion is not None:
            try:
                entries = views.history(self._promotion, app, env, limit=self._history_shown)
            except BerthError:
                entries = None
            if entries is not None:
                return [
                    HistoryEntry(
                        app=app,
                        env=env,
                        release=int(e["release"]),
                        commit=str(e["commit"] or ""),
                        at=datetime.fromisoformat(e["at"]),
                        actor=str(e["promoted_by"]),
                        outcome=str(e["outcome"]),
                        message=str(e["message"]),
                    )
                    for e in entries
                ]
        rollouts = self._store.list_rollouts(app, env, limit=self._history_shown)
        history: list[HistoryEntry] = []
        for rollout in rollouts:
            release = releases.ref(rollout.to_release_id)
            failure = rollout.state.get("failure") if isinstance(rollout.state, Mapping) else None
            history.append(
                HistoryEntry(
                    app=app,
                    env=env,
                    release=rollout.to_release_id,
                    commit=release.commit if release else "",
                    at=rollout.created_at,
                    actor="",
                    outcome=rollout.phase,
                    message=str(failure or ""),
                )
            )
        return history

    def _hosts(self, notes: list[str]) -> tuple[HostView, ...]:
        instances: Mapping[str, Sequence[InstanceView]] | None = None
        if self._inventory is not None:
            try:
                instances = self._inventory.instances()
            except (BerthError, RunnerError) as exc:
                notes.append(f"host inventory unavailable: {exc}")
        now = self._clock.now()
        hosts: list[HostView] = []
        for host in self._store.list_hosts():
            if host.last_heartbeat is None:
                health = "unknown"
            elif now - host.last_heartbeat > self._stale_after:
                health = "stale"
            else:
                health = "up"
            hosts.append(
                HostView(
                    name=host.name,
                    address=host.address,
                    labels=dict(host.labels),
                    last_heartbeat=host.last_heartbeat,
                    health=health,
                    instances=None if instances is None else tuple(instances.get(host.name, ())),
                )
            )
        return tuple(hosts)


class _Releases:
    """Release lookups of one snapshot, each read once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen: dict[int, Release | None] = {}

    def ref(self, release_id: int | None) -> ReleaseRef | None:
        if release_id is None:
            return None
        if release_id not in self._seen:
            try:
                self._seen[release_id] = self._store.get_release(release_id)
            except NotFoundError:
                self._seen[release_id] = None
        release = self._seen[release_id]
        if release is None:
            return ReleaseRef(release_id, "", "")
        return ReleaseRef(
            release.id, release.commit, release.digest, release.message, release.author
        )


def _with_status(cell: Cell, row: Mapping[str, Any] | None) -> Cell:
    if row is None:
        return cell
    gate = row.get("gate") or {}
    approvals = row.get("approvals")
    waiting = row.get("waiting")
    return replace(
        cell,
        gate=None
        if gate.get("kind", "none") == "none" or "status" not in gate
        else GateView(str(gate["kind"]), str(gate["status"]), str(gate.get("message", ""))),
        approvals=None
        if not approvals
        else ApprovalView(tuple(approvals["given"]), int(approvals["required"])),
        waiting=""
        if not waiting
        else f"release {waiting['release']} from {waiting['from']}: {waiting['held']}",
    )


def _count(share: TrafficShare, counts: Mapping[int, int]) -> TrafficShare:
    if not counts:
        return share
    return replace(share, connections=int(counts.get(share.release, 0)))


def _build(build: Build) -> BuildView:
    return BuildView(
        id=build.id,
        app=build.app,
        commit=build.commit,
        state=str(build.state),
        reason=build.reason,
        digest=build.digest,
        created_at=build.created_at,
        finished_at=build.finished_at,
    )
