"""The rollout's vocabulary: steps, options, phases, observations and the state (pure data).

A rollout moves one environment of one app from its ``stable`` release to a new
``canary`` release by steps. Steps are a tagged union dispatched in one place
(:func:`pipeline.rollout.machine.transition`)::

    Step = SetWeight | Pause | Analysis

Everything here is a frozen dataclass: a state is replaced, never changed, so the
machine can compare the state before and after an event to know whether anything
happened. Releases are the store's integer release ids.

The configured form of steps lives in :mod:`pipeline.rolloutspec` (parsed from YAML);
:func:`steps_from_spec` and :func:`options_from_spec` convert it, they do not parse again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pipeline import rolloutspec, units

__all__ = [
    "TERMINAL_PHASES",
    "Allocation",
    "Analysis",
    "AnalysisChecks",
    "AnalysisProgress",
    "Observation",
    "Pause",
    "Phase",
    "ReleaseHealth",
    "RolloutOptions",
    "RolloutState",
    "SetWeight",
    "Step",
    "canary_count",
    "normalise_steps",
    "options_from_spec",
    "resolve_count",
    "steps_from_spec",
]


class Phase(StrEnum):
    """Where a rollout is. Only :func:`~pipeline.rollout.machine.transition` changes it."""

    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    ANALYSING = "analysing"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.ABORTED, Phase.ROLLED_BACK})


# --- steps -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetWeight:
    """Put ``weight`` % of instances (rounded up, at least one) and of traffic on the canary."""

    weight: int

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not 0 <= self.weight <= 100:
            raise ValueError(f"set_weight: must be from 0 to 100 (got {self.weight!r})")


@dataclass(frozen=True)
class Pause:
    """Wait ``duration``; ``None`` waits until someone resumes or promotes the rollout."""

    duration: timedelta | None = None

    @property
    def indefinite(self) -> bool:
        return self.duration is None


@dataclass(frozen=True)
class AnalysisChecks:
    """Thresholds one measurement must meet; ``None`` leaves a quantity unchecked.

    Rates are fractions of one (0.01 is 1 %)."""

    max_error_rate: float | None = None
    max_p99_latency: timedelta | None = None
    min_health_success: float | None = None


@dataclass(frozen=True)
class Analysis:
    """Measure the canary every ``interval`` for ``window``; more than ``failure_limit``
    failed measurements fail the step."""

    checks: AnalysisChecks
    window: timedelta = timedelta(minutes=2)
    interval: timedelta = timedelta(seconds=10)
    failure_limit: int = 0


Step = SetWeight | Pause | Analysis


def steps_from_spec(
    steps: Iterable[rolloutspec.SetWeight | rolloutspec.Pause | rolloutspec.AnalysisStep],
) -> tuple[Step, ...]:
    """The machine's steps for the configured ones (``berth.yml`` or the service config)."""
    converted: list[Step] = []
    for step in steps:
        if isinstance(step, rolloutspec.SetWeight):
            converted.append(SetWeight(step.set_weight))
        elif isinstance(step, rolloutspec.Pause):
            converted.append(Pause(step.pause))
        else:
            spec = step.analysis
            converted.append(
                Analysis(
                    checks=AnalysisChecks(
                        max_error_rate=_fraction(spec.checks.max_error_rate),
                        max_p99_latency=spec.checks.max_p99_latency,
                        min_health_success=_fraction(spec.checks.min_health_success),
                    ),
                    window=spec.window,
                    interval=spec.interval,
                    failure_limit=spec.failure_limit,
                )
            )
    return tuple(converted)


def _fraction(value: units.Percent | None) -> float | None:
    return None if value is None else value.fraction


def normalise_steps(steps: Sequence[Step]) -> tuple[Step, ...]:
    """``steps`` ending at 100 %: a rollout always finishes with all traffic on the canary,
    so a list whose last weight is below 100 gets a final ``SetWeight(100)``."""
    weights = [s.weight for s in steps if isinstance(s, SetWeight)]
    previous = -1
    for weight in weights:
        if weight <= previous:
            raise ValueError(
                f"rollout weights must increase step by step (got {weight} after {previous})"
            )
        previous = weight
    if not weights or weights[-1] != 100:
        return (*steps, SetWeight(100))
    return tuple(steps)


# --- options ---------------------------------------------------------------------------


def resolve_count(count: int | units.Percent, replicas: int, *, round_up: bool) -> int:
    """An absolute number of instances for ``count`` (a number or a share of ``replicas``)."""
    if isinstance(count, int):
        return count
    share = count.of(replicas)
    return math.ceil(share - 1e-9) if round_up else math.floor(share + 1e-9)


_DEFAULT_SURGE = units.Percent(25)


@dataclass(frozen=True)
class RolloutOptions:
    """How fast instances may be replaced and what a failure does.

    ``max_surge`` instances may run above ``replicas`` while the canary grows;
    ``max_unavailable`` may be missing while the stable shrinks (both a count or a share
    of replicas, like Kubernetes: surge rounds up, unavailable rounds down). A step that
    is not ready after ``progress_deadline`` fails."""

    max_surge: int | units.Percent = _DEFAULT_SURGE
    max_unavailable: int | units.Percent = 0
    abort_on_failure: bool = True
    progress_deadline: timedelta = timedelta(minutes=10)

    def surge(self, replicas: int) -> int:
        return resolve_count(self.max_surge, replicas, round_up=True)

    def unavailable(self, replicas: int) -> int:
        return resolve_count(self.max_unavailable, replicas, round_up=False)


def options_from_spec(
    spec: rolloutspec.RolloutSettings, *, progress_deadline: timedelta | None = None
) -> RolloutOptions:
    """The machine's options for an environment's configured rollout settings."""
    return RolloutOptions(
        max_surge=spec.max_surge,
        max_unavailable=spec.max_unavailable,
        abort_on_failure=spec.abort_on_failure,
        progress_deadline=progress_deadline or RolloutOptions.progress_deadline,
    )


def canary_count(replicas: int, weight: int) -> int:
    """Instances on the canary at ``weight``: ceil(N·w/100), and at least one when w > 0."""
    if weight <= 0:
        return 0
    return max(1, -(-replicas * weight // 100))


# --- observations ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseHealth:
    """What the agents report for one release: instances running, healthy, and failed
    (exited, or unhealthy after their start period)."""

    release: int
    running: int = 0
    healthy: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Observation:
    """Every agent's inventory for this environment, summed per release, taken at ``at``."""

    at: datetime
    releases: tuple[ReleaseHealth, ...] = ()

    def of(self, release: int | None) -> ReleaseHealth:
        for health in self.releases:
            if health.release == release:
                return health
        return ReleaseHealth(release if release is not None else -1)


# --- state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    """What one release should have: ``replicas`` instances and ``weight`` % of traffic."""

    release: int
    replicas: int
    weight: int


@dataclass(frozen=True)
class AnalysisProgress:
    """The running analysis of step ``step_index``: its window and its tally."""

    step_index: int
    started_at: datetime
    ends_at: datetime
    measurements: int = 0
    failures: int = 0
    last_failure: str = ""


@dataclass(frozen=True)
class RolloutState:
    """One rollout, all of it: what it moves, where it is, what it has asked for.

    ``allocations`` is the desired state handed to the agents and the router (one entry
    per release that has, or must lose, instances); ``weight`` is the canary's share of
    traffic as last given to the router. ``generation`` goes up by one with every change,
    ``applied`` keeps the ids of the last commands so that a replayed command is a no-op.
    ``settled`` becomes true once a finished rollout's outcome is observed on the hosts.
    """

    app: str
    env: str
    stable: int | None
    replicas: int
    steps: tuple[Step, ...]
    options: RolloutOptions = RolloutOptions()
    canary: int | None = None
    phase: Phase = Phase.PENDING
    step_index: int = 0
    weight: int = 0
    allocations: tuple[Allocation, ...] = ()
    step_started_at: datetime | None = None
    pause_until: datetime | None = None
    analysis: AnalysisProgress | None = None
    observed: Observation | None = None
    target: int | None = None
    failure: str = ""
    lost_hosts: tuple[str, ...] = ()
    settled: bool = False
    generation: int = 0
    applied: tuple[str, ...] = field(default=())

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def finished(self) -> bool:
        """Terminal and observed on the hosts: the engine may close the rollout."""
        return self.terminal and self.settled

    @property
    def current_step(self) -> Step | None:
        return self.steps[self.step_index] if self.step_index < len(self.steps) else None

    def allocation(self, release: int | None) -> Allocation:
        for allocation in self.allocations:
            if allocation.release == release:
                return allocation
        return Allocation(release if release is not None else -1, 0, 0)

    def traffic(self) -> dict[int, int]:
        """Release -> share of traffic, for the releases that have one."""
        return {a.release: a.weight for a in self.allocations if a.weight > 0}
