"""What happens to a rollout (events) and what it asks the world to do (actions): data only.

Events, a tagged union::

    Event = Start | Tick | InstancesObserved | AnalysisResult
          | Resume | Promote | Abort | Retry | Rollback | HostLost

``Tick`` and ``InstancesObserved`` are level-triggered facts (time passes, the hosts look
like this); the others are commands with an ``id`` so that delivering one twice (a
retried HTTP request, a replayed chat message, a control plane that died after deciding)
applies it once.

Actions, a tagged union the engine executes in order::

    Action = EnsureInstances | StopInstances | SetRouterWeights | StartAnalysis
           | RecordEvent | SetStable | RetryRollout

Instance counts are targets, not deltas: ``EnsureInstances(r, 3)`` means "three
instances of r exist", so executing an action twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.rollout.model import Analysis, Observation

__all__ = [
    "COMMANDS",
    "Abort",
    "Action",
    "AnalysisResult",
    "Command",
    "EnsureInstances",
    "Event",
    "HostLost",
    "InstancesObserved",
    "Measurement",
    "Promote",
    "RecordEvent",
    "Resume",
    "Retry",
    "RetryRollout",
    "Rollback",
    "SetRouterWeights",
    "SetStable",
    "Start",
    "StartAnalysis",
    "StopInstances",
    "Tick",
]

# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Begin moving the environment to ``release``."""

    id: str
    release: int
    by: str = "system"


@dataclass(frozen=True)
class Tick:
    """Time passes: pauses and analysis windows may end, deadlines may pass."""


@dataclass(frozen=True)
class InstancesObserved:
    """The agents' inventories, summed per release. Older than the last one: ignored."""

    observation: Observation


@dataclass(frozen=True)
class Measurement:
    """One analysis measurement of the canary; ``None`` where nothing was measured.
    Rates are fractions of one."""

    requests: int = 0
    error_rate: float | None = None
    p99_latency: timedelta | None = None
    health_success: float | None = None


@dataclass(frozen=True)
class AnalysisResult:
    """A measurement taken at ``at`` for the analysis of step ``step_index``."""

    id: str
    step_index: int
    at: datetime
    measurement: Measurement


@dataclass(frozen=True)
class Resume:
    """Go on past a pause, or try a failed step again (when ``abort_on_failure`` is off)."""

    id: str
    by: str = "system"


@dataclass(frozen=True)
class Promote:
    """Skip the current pause or analysis."""

    id: str
    by: str = "system"


@dataclass(frozen=True)
class Abort:
    """Give up: all traffic and instances back to the stable release."""

    id: str
    by: str = "system"
    reason: str = ""


@dataclass(frozen=True)
class Retry:
    """Start an aborted rollout again from its first step."""

    id: str
    by: str = "system"


@dataclass(frozen=True)
class Rollback:
    """Straight to ``to`` (default: the stable release) at 100 %, then pin the environment."""

    id: str
    to: int | None = None
    by: str = "system"


@dataclass(frozen=True)
class HostLost:
    """``host`` missed its heartbeats; its instances must be placed elsewhere."""

    id: str
    host: str


Command = Start | AnalysisResult | Resume | Promote | Abort | Retry | Rollback | HostLost
COMMANDS = (Start, AnalysisResult, Resume, Promote, Abort, Retry, Rollback, HostLost)
Event = Command | Tick | InstancesObserved

# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureInstances:
    """Make ``count`` healthy instances of ``release`` exist, avoiding ``exclude_hosts``."""

    release: int
    count: int
    exclude_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopInstances:
    """Stop instances of ``release`` until ``keep`` remain (0: all of them)."""

    release: int
    keep: int = 0


@dataclass(frozen=True)
class SetRouterWeights:
    """Split new connections: ``(release, percent)`` pairs summing to 100 (or empty)."""

    weights: tuple[tuple[int, int], ...]

    def weight_of(self, release: int | None) -> int:
        return next((w for r, w in self.weights if r == release), 0)


@dataclass(frozen=True)
class StartAnalysis:
    """Begin measuring ``release`` for the analysis of step ``step_index``."""

    release: int
    step_index: int
    analysis: Analysis


@dataclass(frozen=True)
class RecordEvent:
    """Write a line to the audit log (``kind`` is machine-readable, ``message`` for people)."""

    kind: str
    message: str


@dataclass(frozen=True)
class SetStable:
    """Make ``release`` the environment's stable release; ``pinned`` sets the pin too."""

    release: int
    pinned: bool | None = None


@dataclass(frozen=True)
class RetryRollout:
    """Start a new rollout of ``release`` (an aborted rollout tried again)."""

    release: int


Action = (
    EnsureInstances
    | StopInstances
    | SetRouterWeights
    | StartAnalysis
    | RecordEvent
    | SetStable
    | RetryRollout
)
