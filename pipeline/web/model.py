"""What the dashboard shows, as frozen data (pure): one :class:`DashboardData` per moment.

A :class:`~pipeline.web.source.DashboardSource` builds it; :mod:`pipeline.web.sections`
turns it into HTML. Nothing here reads the store or renders anything, so the page can be
tested from hand-made data and the source from a real store, separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "ApprovalView",
    "BuildLogView",
    "BuildView",
    "Cell",
    "DashboardData",
    "GateView",
    "HistoryEntry",
    "HostView",
    "InstanceView",
    "LockView",
    "ReleaseRef",
    "RolloutView",
    "TrafficShare",
]


@dataclass(frozen=True)
class ReleaseRef:
    """A release as the page names it: id, commit, image digest and the commit's subject."""

    id: int
    commit: str
    digest: str
    message: str = ""
    author: str = ""

    @property
    def short_commit(self) -> str:
        return self.commit[:12]

    @property
    def short_digest(self) -> str:
        algorithm, _, hexa = self.digest.partition(":")
        return f"{algorithm}:{hexa[:12]}" if hexa else self.digest

    @property
    def subject(self) -> str:
        """The first line of the commit message."""
        return self.message.strip().splitlines()[0] if self.message.strip() else ""


@dataclass(frozen=True)
class LockView:
    """Who holds an environment's lock, why, since when."""

    holder: str
    reason: str
    since: datetime


@dataclass(frozen=True)
class GateView:
    """The gate of an environment for its stable release: kind (functional, perf,
    approval, none), status (pending, running, passed, failed, ...) and its message."""

    kind: str
    status: str
    message: str = ""


@dataclass(frozen=True)
class ApprovalView:
    """Approvals of the stable release: who gave one, how many are needed."""

    given: tuple[str, ...]
    required: int

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.given))


@dataclass(frozen=True)
class Cell:
    """One app in one environment: what runs there and what stands in its way."""

    app: str
    env: str
    stable: ReleaseRef | None = None
    previous: ReleaseRef | None = None
    pinned: bool = False
    lock: LockView | None = None
    gate: GateView | None = None
    approvals: ApprovalView | None = None
    waiting: str = ""
    rollout_id: int | None = None


@dataclass(frozen=True)
class TrafficShare:
    """One release's part of a rollout: its weight (share of new connections the router
    gives it), its instances wanted and observed, and, when the router's counters are
    known, the connections it actually received."""

    release: int
    role: str
    weight: int
    replicas: int = 0
    running: int = 0
    healthy: int = 0
    failed: int = 0
    connections: int | None = None


@dataclass(frozen=True)
class RolloutView:
    """A rollout in progress: step ``step`` of ``steps`` (1-based), its weight and phase."""

    id: int
    app: str
    env: str
    phase: str
    step: int
    steps: int
    step_label: str
    weight: int
    canary: ReleaseRef
    stable: ReleaseRef | None = None
    shares: tuple[TrafficShare, ...] = ()
    failure: str = ""
    updated_at: datetime | None = None

    @property
    def connections_known(self) -> bool:
        return any(share.connections is not None for share in self.shares)


@dataclass(frozen=True)
class HistoryEntry:
    """One release that entered an environment, and how that ended."""

    app: str
    env: str
    release: int
    commit: str
    at: datetime | None
    actor: str
    outcome: str
    message: str = ""


@dataclass(frozen=True)
class BuildView:
    """One build of the queue."""

    id: int
    app: str
    commit: str
    state: str
    reason: str
    digest: str | None
    created_at: datetime
    finished_at: datetime | None = None


@dataclass(frozen=True)
class BuildLogView:
    """A build and the tail of its log (``truncated`` when the beginning is left out)."""

    build: BuildView
    text: str
    size: int
    truncated: bool


@dataclass(frozen=True)
class InstanceView:
    """One container on a host, as its agent reports it."""

    id: str
    app: str
    env: str
    release: int | None
    state: str
    healthy: bool | None = None


@dataclass(frozen=True)
class HostView:
    """A container host: address, labels, when it was last heard from, its instances.
    ``health`` is ``up``, ``stale`` (no heartbeat lately) or ``unknown`` (never heard)."""

    name: str
    address: str
    labels: Mapping[str, str]
    last_heartbeat: datetime | None
    health: str
    instances: tuple[InstanceView, ...] | None = None


@dataclass(frozen=True)
class DashboardData:
    """Everything on the page at ``generated_at``; ``last_event_id`` is the newest entry
    of the event log it reflects."""

    generated_at: datetime
    apps: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    cells: tuple[Cell, ...] = ()
    rollouts: tuple[RolloutView, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    builds: tuple[BuildView, ...] = ()
    hosts: tuple[HostView, ...] = ()
    last_event_id: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def rolling(self) -> bool:
        """True while some rollout is in progress (the page then refreshes every second)."""
        return bool(self.rollouts)

    def cell(self, app: str, env: str) -> Cell | None:
        for cell in self.cells:
            if cell.app == app and cell.env == env:
                return cell
        return None
