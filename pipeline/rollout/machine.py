"""The rollout state machine: one pure ``transition(state, event, now) -> (state, actions)``.

This is the only place a rollout's phase changes. It never does anything itself: it
returns the new state and the actions (:mod:`pipeline.rollout.events`) that bring the
world in line with it; the engine persists the state *before* executing them.

How a rollout moves:

- ``Start`` enters the first step. An environment without a stable release has nothing
  to shift traffic away from, so its rollout is a single ``SetWeight(100)``.
- ``SetWeight(w)``: grow the canary to ceil(N·w/100) instances (within ``max_surge``),
  and once they are all observed healthy move ``w`` % of traffic to them, then shrink
  the stable (within ``max_unavailable``, never below one instance while it still gets
  traffic). The step is done when a fresh observation shows exactly that.
- ``Pause``: wait for its duration (or for ``Resume``/``Promote``), instances healthy.
- ``Analysis``: ask for measurements; more failed ones than ``failure_limit`` fail the
  step, a window without any measurement fails it too.
- A failure (a canary instance failed, a step not ready by ``progress_deadline``, an
  analysis) aborts back to the stable release when ``abort_on_failure``, else pauses
  for a person.
- ``Abort`` and ``Rollback`` go straight to their target at 100 % — no pauses, no
  analysis. Finished phases are final; the machine then only *settles* the outcome
  (target healthy, everything else stopped) and marks the state ``settled``.

Idempotency: a command whose id was applied is a no-op; an observation not newer than
the last one is a no-op; and the machine runs to a fixpoint, so a second ``Tick`` at the
same instant finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from pipeline import units
from pipeline.rollout.errors import RolloutCommandError
from pipeline.rollout.events import (
    COMMANDS,
    Abort,
    Action,
    AnalysisResult,
    EnsureInstances,
    Event,
    HostLost,
    InstancesObserved,
    Measurement,
    Promote,
    RecordEvent,
    Resume,
    Retry,
    RetryRollout,
    Rollback,
    SetRouterWeights,
    SetStable,
    Start,
    StartAnalysis,
    StopInstances,
    Tick,
)
from pipeline.rollout.model import (
    Allocation,
    Analysis,
    AnalysisChecks,
    AnalysisProgress,
    Observation,
    Pause,
    Phase,
    RolloutOptions,
    RolloutState,
    SetWeight,
    canary_count,
    normalise_steps,
)

__all__ = ["APPLIED_IDS_KEPT", "evaluate", "new_rollout", "transition"]

APPLIED_IDS_KEPT = 100
"""How many command ids a state remembers for de-duplication."""

Actions = list[Action]


def new_rollout(
    app: str,
    env: str,
    *,
    stable: int | None,
    replicas: int,
    steps: tuple[SetWeight | Pause | Analysis, ...],
    options: RolloutOptions | None = None,
) -> RolloutState:
    """A pending rollout of ``env``, currently serving ``stable`` with ``replicas`` instances."""
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1 (got {replicas})")
    # What serves now: a rollback or abort before the start must know what to stop.
    serving = () if stable is None else (Allocation(stable, replicas, 100),)
    state = RolloutState(
        app=app, env=env, stable=stable, replicas=replicas, steps=tuple(steps), allocations=serving
    )
    return state if options is None else replace(state, options=options)


def transition(
    state: RolloutState, event: Event, now: datetime
) -> tuple[RolloutState, tuple[Action, ...]]:
    """The state after ``event`` at ``now``, and the actions that make the world match it.

    Raises :class:`RolloutCommandError` for a command that does not fit the phase (resume
    while progressing, abort of a finished rollout...); the state is then unchanged."""
    if isinstance(event, COMMANDS) and event.id in state.applied:
        return state, ()
    new, actions = _HANDLERS[type(event)](state, event, now)
    new, more = _progress(new, now)
    actions += more
    if new == state and not actions:
        return state, ()
    applied = state.applied
    if isinstance(event, COMMANDS):
        applied = (*applied, event.id)[-APPLIED_IDS_KEPT:]
    return replace(new, generation=state.generation + 1, applied=applied), tuple(actions)


# --- events ----------------------------------------------------------------------------


def _start(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, Start)
    if state.phase is not Phase.PENDING:
        raise RolloutCommandError(
            f"{_where(state)}: the rollout of release {state.canary} has already started "
            f"(phase {state.phase}); abort it before starting another"
        )
    if event.release == state.stable:
        raise RolloutCommandError(
            f"{_where(state)}: release {event.release} is already the stable release; "
            "there is nothing to roll out"
        )
    # Without a stable release nothing serves yet: no traffic to shift, no reason to wait.
    steps = normalise_steps(state.steps) if state.stable is not None else (SetWeight(100),)
    allocations = [Allocation(event.release, 0, 0)]
    if state.stable is not None:
        allocations.insert(0, Allocation(state.stable, state.replicas, 100))
    started = replace(
        state,
        canary=event.release,
        steps=steps,
        phase=Phase.PROGRESSING,
        step_index=0,
        weight=0,
        allocations=tuple(allocations),
        step_started_at=None,
    )
    return started, [
        RecordEvent(
            "rollout_started",
            f"{_where(state)}: rollout of release {event.release} started by {event.by} "
            f"(stable: {_release(state.stable)}, {len(steps)} steps)",
        )
    ]


def _tick(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    return state, []


def _observed(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, InstancesObserved)
    last = state.observed
    if last is not None and event.observation.at <= last.at:
        return state, []
    return replace(state, observed=event.observation), []


def _analysis_result(
    state: RolloutState, event: Event, now: datetime
) -> tuple[RolloutState, Actions]:
    assert isinstance(event, AnalysisResult)
    progress = state.analysis
    # A measurement for another step, or from outside the window, arrived late: drop it.
    if (
        state.phase is not Phase.ANALYSING
        or progress is None
        or progress.step_index != event.step_index
        or not progress.started_at <= event.at <= progress.ends_at
    ):
        return state, []
    step = state.current_step
    assert isinstance(step, Analysis)
    problems = evaluate(step.checks, event.measurement)
    progress = replace(
        progress,
        measurements=progress.measurements + 1,
        failures=progress.failures + (1 if problems else 0),
        last_failure="; ".join(problems) if problems else progress.last_failure,
    )
    state = replace(state, analysis=progress)
    if progress.failures > step.failure_limit:
        return _fail(
            state,
            f"analysis of step {state.step_index + 1} failed {progress.failures} of "
            f"{progress.measurements} measurements (limit {step.failure_limit}): "
            f"{progress.last_failure}",
            now,
        )
    return state, []


def _resume(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, Resume)
    if state.phase is not Phase.PAUSED:
        raise RolloutCommandError(
            f"{_where(state)}: nothing to resume, the rollout is {state.phase}"
            + (" (use berth promote to skip an analysis)" if state.phase is Phase.ANALYSING else "")
        )
    note = RecordEvent("rollout_resumed", f"{_where(state)}: resumed by {event.by}")
    if state.failure:
        return _restart_step(state), [note]
    return _next_step(state), [note]


def _promote(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, Promote)
    step = state.current_step
    if state.phase not in (Phase.PAUSED, Phase.ANALYSING):
        raise RolloutCommandError(
            f"{_where(state)}: nothing to promote, the rollout is {state.phase}; "
            "promote skips a pause or an analysis"
        )
    note = RecordEvent(
        "rollout_promoted", f"{_where(state)}: step {state.step_index + 1} skipped by {event.by}"
    )
    # A failed weight step is tried again, never skipped: weights must not jump.
    if isinstance(step, SetWeight):
        return _restart_step(state), [note]
    return _next_step(state), [note]


def _abort(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, Abort)
    if state.terminal:
        raise RolloutCommandError(
            f"{_where(state)}: the rollout is already {state.phase}; "
            "use berth rollback to return to an earlier release"
        )
    reason = f"aborted by {event.by}" + (f": {event.reason}" if event.reason else "")
    return _finish(state, Phase.ABORTED, state.stable, reason, now)


def _retry(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, Retry)
    if state.phase is not Phase.ABORTED or state.canary is None:
        raise RolloutCommandError(
            f"{_where(state)}: only an aborted rollout can be retried (this one is {state.phase})"
        )
    # Finished phases are final: a retry is a new rollout of the same release.
    return state, [
        RetryRollout(state.canary),
        RecordEvent(
            "rollout_retried",
            f"{_where(state)}: rollout of release {state.canary} retried by {event.by}",
        ),
    ]


def _rollback(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, Rollback)
    if state.terminal:
        raise RolloutCommandError(
            f"{_where(state)}: the rollout is already {state.phase}; a rollback of a "
            "finished rollout starts a new one"
        )
    target = event.to if event.to is not None else state.stable
    if target is None:
        raise RolloutCommandError(
            f"{_where(state)}: there is no earlier release to roll back to; name one with --to"
        )
    state, actions = _finish(
        state, Phase.ROLLED_BACK, target, f"rolled back to release {target} by {event.by}", now
    )
    return state, [*actions, SetStable(target, pinned=True)]


def _host_lost(state: RolloutState, event: Event, now: datetime) -> tuple[RolloutState, Actions]:
    assert isinstance(event, HostLost)
    if state.finished or event.host in state.lost_hosts:
        return state, []
    lost = (*state.lost_hosts, event.host)
    actions: Actions = [
        RecordEvent(
            "host_lost",
            f"{_where(state)}: host {event.host} is lost; its instances move to other hosts",
        )
    ]
    actions += [
        EnsureInstances(a.release, a.replicas, exclude_hosts=lost)
        for a in state.allocations
        if a.replicas > 0
    ]
    return replace(state, lost_hosts=lost), actions


Handler = Callable[[RolloutState, Event, datetime], tuple[RolloutState, Actions]]
_HANDLERS: dict[type, Handler] = {
    Start: _start,
    Tick: _tick,
    InstancesObserved: _observed,
    AnalysisResult: _analysis_result,
    Resume: _resume,
    Promote: _promote,
    Abort: _abort,
    Retry: _retry,
    Rollback: _rollback,
    HostLost: _host_lost,
}

# --- progress: the steps, dispatched in one place ---------------------------------------


def _progress(state: RolloutState, now: datetime) -> tuple[RolloutState, Actions]:
    """Drive the rollout as far as the facts allow (a fixpoint of :func:`_drive`)."""
    actions: Actions = []
    # Each round enters, completes or settles something; this bound is never reached.
    for _ in range(4 * len(state.steps) + 8):
        new, more = _drive(state, now)
        actions += more
        if new == state:
            break
        state = new
    return state, actions


def _drive(state: RolloutState, now: datetime) -> tuple[RolloutState, Actions]:
    if state.phase is Phase.PENDING:
        return state, []
    if state.terminal:
        return _settle(state, now)
    if state.failure:
        return state, []  # paused after a failure: a person decides
    failed = _failed_canaries(state)
    if failed:
        return _fail(
            state,
            f"{failed} instance(s) of release {state.canary} failed (exited or unhealthy)",
            now,
        )
    step = state.current_step
    if step is None:
        return _complete(state, now)
    if state.step_started_at is None:
        return _enter(state, step, now)
    if isinstance(step, SetWeight):
        return _set_weight(state, step, now)
    if isinstance(step, Pause):
        if state.pause_until is not None and now >= state.pause_until and _ready(state):
            return _next_step(state), []
        return state, []
    return _analyse(state, step, now)


def _enter(
    state: RolloutState, step: SetWeight | Pause | Analysis, now: datetime
) -> tuple[RolloutState, Actions]:
    position = f"step {state.step_index + 1} of {len(state.steps)}"
    state = replace(state, step_started_at=now)
    if isinstance(step, SetWeight):
        note = f"{_where(state)}: {position}: weight {step.weight}"
        return replace(state, phase=Phase.PROGRESSING), [RecordEvent("step_started", note)]
    if isinstance(step, Pause):
        until = None if step.duration is None else now + step.duration
        how = "until someone resumes" if until is None else f"for {_duration(step)}"
        return replace(state, phase=Phase.PAUSED, pause_until=until), [
            RecordEvent("step_started", f"{_where(state)}: {position}: pause {how}")
        ]
    assert state.canary is not None
    progress = AnalysisProgress(state.step_index, now, now + step.window)
    return replace(state, phase=Phase.ANALYSING, analysis=progress), [
        StartAnalysis(state.canary, state.step_index, step),
        RecordEvent("step_started", f"{_where(state)}: {position}: analysis"),
    ]


def _set_weight(
    state: RolloutState, step: SetWeight, now: datetime
) -> tuple[RolloutState, Actions]:
    started, canary = state.step_started_at, state.canary
    assert started is not None
    assert canary is not None
    n, w = state.replicas, step.weight
    canary_target = canary_count(n, w)
    stable_target = 0 if state.stable is None or w == 100 else max(n - canary_target, 1)
    fresh = _fresh(state, started)
    canary_now = state.allocation(canary)
    stable_now = state.allocation(state.stable)
    canary_healthy = fresh.of(canary).healthy if fresh else 0
    stable_running = state.observed.of(state.stable).running if state.observed else 0

    # A stable that still gets traffic keeps an instance; that one may exceed the surge
    # budget, or a rollout with max_surge 0 could never reach its next weight.
    def floor(weight: int) -> int:
        if weight != w and state.stable is not None and weight < 100:
            return max(stable_target, 1)
        return stable_target

    # Grow the canary within the surge budget (counting stable instances still stopping).
    ceiling = max(n + state.options.surge(n), canary_target + floor(state.weight))
    canary_replicas = min(
        canary_target,
        max(canary_now.replicas, ceiling - max(stable_now.replicas, stable_running)),
    )
    # Traffic moves only once every canary instance the weight needs is healthy.
    weight = state.weight
    if weight != w and canary_replicas == canary_target and canary_healthy >= canary_target:
        weight = w
    available = n - state.options.unavailable(n) - canary_healthy
    stable_replicas = min(stable_now.replicas, max(floor(weight), available))

    actions: Actions = []
    if canary_replicas > canary_now.replicas:
        actions.append(EnsureInstances(canary, canary_replicas, state.lost_hosts))
    if weight != state.weight:
        actions.append(_weights(state.stable, 100 - weight, canary, weight))
        actions.append(
            RecordEvent(
                "weight_set",
                f"{_where(state)}: {weight} % of traffic on release {canary}",
            )
        )
    if state.stable is not None and stable_replicas < stable_now.replicas:
        actions.append(StopInstances(state.stable, stable_replicas))
    allocations = [Allocation(canary, canary_replicas, weight)]
    if state.stable is not None:
        allocations.insert(0, Allocation(state.stable, stable_replicas, 100 - weight))
    state = replace(state, weight=weight, allocations=tuple(allocations))

    done = (
        weight == w
        and canary_replicas == canary_target
        and stable_replicas == stable_target
        and fresh is not None
        and fresh.of(canary).healthy >= canary_target
        and (
            state.stable is None
            or (
                fresh.of(state.stable).healthy >= stable_target
                and fresh.of(state.stable).running <= stable_target
            )
        )
    )
    if done:
        return _next_step(state), actions
    if now - started > state.options.progress_deadline:
        seen = fresh.of(canary).healthy if fresh else 0
        return _fail(
            state,
            f"step {state.step_index + 1} (weight {w}) not ready after "
            f"{units.format_duration(state.options.progress_deadline)}: "
            f"{seen} of {canary_target} instance(s) of release {canary} healthy",
            now,
        )
    return state, actions


def _analyse(state: RolloutState, step: Analysis, now: datetime) -> tuple[RolloutState, Actions]:
    progress = state.analysis
    assert progress is not None
    if now < progress.ends_at:
        return state, []
    if progress.measurements == 0:
        return _fail(
            state,
            f"analysis of step {state.step_index + 1}: no measurement arrived within "
            f"{units.format_duration(step.window)}",
            now,
        )
    if not _ready(state):
        return state, []
    return _next_step(state), [
        RecordEvent(
            "analysis_passed",
            f"{_where(state)}: analysis of step {state.step_index + 1} passed "
            f"({progress.failures} of {progress.measurements} measurements failed)",
        )
    ]


def _complete(state: RolloutState, now: datetime) -> tuple[RolloutState, Actions]:
    canary = state.canary
    assert canary is not None
    state, actions = _finish(state, Phase.COMPLETED, canary, "", now)
    return state, [*actions, SetStable(canary)]


# --- finishing: abort, rollback, completion ---------------------------------------------


def _fail(state: RolloutState, reason: str, now: datetime) -> tuple[RolloutState, Actions]:
    if state.options.abort_on_failure:
        return _finish(state, Phase.ABORTED, state.stable, reason, now)
    paused = replace(state, phase=Phase.PAUSED, pause_until=None, failure=reason)
    return paused, [
        RecordEvent(
            "rollout_failed",
            f"{_where(state)}: {reason}; paused: berth resume retries the step, "
            "berth abort returns to the stable release",
        )
    ]


def _finish(
    state: RolloutState, phase: Phase, target: int | None, reason: str, now: datetime
) -> tuple[RolloutState, Actions]:
    """Enter a final phase: all traffic and instances will go to ``target``."""
    kind = {
        Phase.COMPLETED: "rollout_completed",
        Phase.ABORTED: "rollout_aborted",
        Phase.ROLLED_BACK: "rolled_back",
    }[phase]
    message = f"{_where(state)}: {phase}" + (f": {reason}" if reason else "")
    if target is not None and all(a.release != target for a in state.allocations):
        state = replace(state, allocations=(*state.allocations, Allocation(target, 0, 0)))
    finished = replace(
        state,
        phase=phase,
        target=target,
        failure=reason if phase is Phase.ABORTED else state.failure,
        pause_until=None,
        analysis=None,
        step_started_at=now,
        settled=False,
    )
    return finished, [RecordEvent(kind, message)]


def _settle(state: RolloutState, now: datetime) -> tuple[RolloutState, Actions]:
    """Bring a finished rollout's outcome about: target at N and 100 %, the rest stopped."""
    if state.settled:
        return state, []
    finished_at = state.step_started_at
    assert finished_at is not None
    target, n = state.target, state.replicas
    # Only an observation made after the decision may show the target ready for traffic.
    observed = _fresh(state, finished_at)
    actions: Actions = []
    current = state.traffic()
    if target is None:
        weights: dict[int, int] = {}
    elif current.get(target, 0) > 0 or (observed is not None and observed.of(target).healthy):
        weights = {target: 100}
    else:
        weights = current  # keep serving what serves until the target can take over
    if weights != current:
        actions.append(SetRouterWeights(tuple(sorted(weights.items()))))
    allocations: list[Allocation] = []
    for allocation in state.allocations:
        release = allocation.release
        if release == target:
            replicas = n
            if allocation.replicas < n:
                actions.append(EnsureInstances(release, n, state.lost_hosts))
        else:
            replicas = allocation.replicas if weights.get(release, 0) else 0
            if replicas < allocation.replicas:
                actions.append(StopInstances(release, 0))
        allocations.append(Allocation(release, replicas, weights.get(release, 0)))
    weight = weights.get(state.canary, 0) if state.canary is not None else 0
    state = replace(state, allocations=tuple(allocations), weight=weight)
    fresh = observed
    if (
        fresh is not None
        and (target is None or weights == {target: 100})
        and all(
            fresh.of(a.release).healthy >= n
            if a.release == target
            else fresh.of(a.release).running == 0
            for a in state.allocations
        )
    ):
        kept = tuple(a for a in state.allocations if a.release == target)
        state = replace(state, settled=True, allocations=kept)
        actions.append(
            RecordEvent(
                "rollout_settled",
                f"{_where(state)}: release {_release(target)} serves all traffic "
                f"with {n if target is not None else 0} instance(s)",
            )
        )
    return state, actions


# --- helpers ---------------------------------------------------------------------------


def evaluate(checks: AnalysisChecks, measurement: Measurement) -> list[str]:
    """What is wrong with one measurement against ``checks`` (empty: it passed).
    A quantity the checks need but the measurement lacks is a failure, not a pass."""
    problems: list[str] = []
    if checks.max_error_rate is not None:
        rate = measurement.error_rate
        if rate is None:
            problems.append("no error rate measured")
        elif rate > checks.max_error_rate:
            problems.append(
                f"error rate {rate:.2%} above {checks.max_error_rate:.2%} "
                f"({measurement.requests} requests)"
            )
    if checks.max_p99_latency is not None:
        p99 = measurement.p99_latency
        if p99 is None:
            problems.append("no p99 latency measured")
        elif p99 > checks.max_p99_latency:
            problems.append(
                f"p99 latency {units.format_duration(p99)} above "
                f"{units.format_duration(checks.max_p99_latency)}"
            )
    if checks.min_health_success is not None:
        share = measurement.health_success
        if share is None:
            problems.append("no health probe results")
        elif share < checks.min_health_success:
            problems.append(
                f"health probes {share:.2%} successful, below {checks.min_health_success:.2%}"
            )
    return problems


def _next_step(state: RolloutState) -> RolloutState:
    return replace(
        state,
        phase=Phase.PROGRESSING,
        step_index=state.step_index + 1,
        step_started_at=None,
        pause_until=None,
        analysis=None,
    )


def _restart_step(state: RolloutState) -> RolloutState:
    return replace(
        state,
        phase=Phase.PROGRESSING,
        failure="",
        step_started_at=None,
        pause_until=None,
        analysis=None,
    )


def _fresh(state: RolloutState, since: datetime) -> Observation | None:
    """The last observation if it was taken after ``since`` (after the decisions it judges)."""
    observed = state.observed
    return observed if observed is not None and observed.at > since else None


def _ready(state: RolloutState) -> bool:
    """Every instance the current allocations need is observed healthy."""
    observed = state.observed
    if observed is None:
        return False
    return all(observed.of(a.release).healthy >= a.replicas for a in state.allocations)


def _failed_canaries(state: RolloutState) -> int:
    observed, started = state.observed, state.step_started_at
    if observed is None or started is None or observed.at <= started:
        return 0
    return observed.of(state.canary).failed


def _weights(stable: int | None, stable_weight: int, canary: int, weight: int) -> SetRouterWeights:
    pairs = [(canary, weight)] if stable is None else [(stable, stable_weight), (canary, weight)]
    return SetRouterWeights(tuple((r, w) for r, w in pairs if w > 0))


def _where(state: RolloutState) -> str:
    return f"{state.app}/{state.env}"


def _release(release: int | None) -> str:
    return "none" if release is None else str(release)


def _duration(step: Pause) -> str:
    return "ever" if step.duration is None else units.format_duration(step.duration)
