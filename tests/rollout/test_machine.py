"""The rollout machine, table-driven: each test walks one scenario through ``transition``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.rollout.errors import RolloutCommandError
from pipeline.rollout.events import (
    Abort,
    AnalysisResult,
    EnsureInstances,
    HostLost,
    Measurement,
    Promote,
    Resume,
    Retry,
    RetryRollout,
    Rollback,
    SetRouterWeights,
    Start,
    Tick,
)
from pipeline.rollout.machine import evaluate, new_rollout, transition
from pipeline.rollout.model import (
    Analysis,
    AnalysisChecks,
    Observation,
    Pause,
    Phase,
    ReleaseHealth,
    RolloutOptions,
    RolloutState,
    SetWeight,
    Step,
)
from tests.rollout.world import T0, Driver, World

pytestmark = pytest.mark.unit

S, C = 1, 2  # the stable and the canary release
THREE_STEPS: tuple[Step, ...] = (SetWeight(10), SetWeight(50), SetWeight(100))
CHECKS = AnalysisChecks(max_error_rate=0.01, max_p99_latency=timedelta(milliseconds=500))


def driver(
    steps: tuple[Step, ...] = THREE_STEPS,
    *,
    replicas: int = 4,
    stable: int | None = S,
    options: RolloutOptions | None = None,
    failing: set[int] | None = None,
) -> Driver:
    state = new_rollout(
        "demo", "prod", stable=stable, replicas=replicas, steps=steps, options=options
    )
    world = World(
        instances={} if stable is None else {stable: replicas},
        router={} if stable is None else {stable: 100},
        stable=stable,
        failing=failing or set(),
    )
    d = Driver(state, world)
    d.send(Start("start-1", C))
    return d


def test_three_step_rollout_reaches_100_with_every_weight_in_order() -> None:
    d = driver()
    d.run()
    assert d.state.phase is Phase.COMPLETED
    assert d.state.finished
    assert d.world.weight_history == [{S: 90, C: 10}, {S: 50, C: 50}, {C: 100}]
    assert d.world.instances == {S: 0, C: 4}
    assert d.world.stable == C
    assert d.state.weight == 100
    assert d.state.allocations[0].release == C


@pytest.mark.parametrize(
    ("replicas", "weight", "canary", "stable"),
    [(4, 10, 1, 3), (4, 50, 2, 2), (10, 10, 1, 9), (10, 55, 6, 4), (2, 60, 2, 1), (1, 10, 1, 1)],
)
def test_a_weight_step_puts_ceil_share_on_the_canary_and_keeps_one_stable(
    replicas: int, weight: int, canary: int, stable: int
) -> None:
    d = driver((SetWeight(weight), Pause()), replicas=replicas)
    d.run(10)
    assert d.state.phase is Phase.PAUSED
    assert d.world.instances == {S: stable, C: canary}
    assert d.world.router == {S: 100 - weight, C: weight}


def test_the_canary_gets_traffic_only_once_it_is_observed_healthy() -> None:
    d = driver()
    start_actions = d.state
    assert start_actions.weight == 0
    # before any observation the canary was asked for, but no traffic moved
    assert d.world.instances == {S: 4, C: 1}
    assert d.world.router == {S: 100}
    d.round()
    assert d.world.router == {S: 90, C: 10}


def test_a_step_never_completes_while_an_instance_it_needs_is_missing() -> None:
    state = new_rollout("demo", "prod", stable=S, replicas=4, steps=THREE_STEPS)
    state, _ = transition(state, Start("s", C), T0)
    for second in range(1, 30):
        # the canary never has more than one healthy instance: 50 % needs two
        seen = Observation(
            T0 + timedelta(seconds=second),
            (ReleaseHealth(S, 3, 3), ReleaseHealth(C, 1, 1)),
        )
        state, _ = transition(state, _observed(seen), seen.at)
    assert state.step_index == 1
    assert state.weight == 10
    assert state.phase is Phase.PROGRESSING


def test_a_step_not_ready_by_the_deadline_aborts() -> None:
    d = driver(options=RolloutOptions(progress_deadline=timedelta(seconds=5)))
    d.world.instances[C] = 0
    d.world.failing = set()
    # the canary's instances never appear: a world that drops them
    for _ in range(10):
        d.world.instances[C] = 0
        d.round()
    assert d.state.phase is Phase.ABORTED
    assert "not ready after 5s" in d.state.failure


def test_a_failing_health_check_aborts_and_the_stable_keeps_all_traffic() -> None:
    d = driver(failing={C})
    d.run()
    assert d.state.phase is Phase.ABORTED
    assert d.state.finished
    assert "failed" in d.state.failure
    # the canary never got a request: the router never left the stable
    assert d.world.weight_history == []
    assert d.world.router == {S: 100}
    assert d.world.instances == {S: 4, C: 0}


def test_without_abort_on_failure_a_failure_pauses_and_resume_tries_again() -> None:
    d = driver(options=RolloutOptions(abort_on_failure=False), failing={C})
    d.run(5)
    assert d.state.phase is Phase.PAUSED
    assert d.state.failure
    d.world.failing.clear()
    d.send(Resume("r-1", by="ann"))
    d.run()
    assert d.state.phase is Phase.COMPLETED


def test_an_indefinite_pause_waits_for_resume() -> None:
    d = driver((SetWeight(20), Pause(), SetWeight(100)))
    d.run(20)
    assert d.state.phase is Phase.PAUSED
    assert d.state.pause_until is None
    generation = d.state.generation
    d.now += timedelta(days=3)
    d.send(Tick())
    assert d.state.generation == generation
    d.send(Resume("r-1"))
    d.run()
    assert d.state.phase is Phase.COMPLETED


def test_a_timed_pause_ends_by_itself() -> None:
    d = driver((SetWeight(20), Pause(timedelta(seconds=30)), SetWeight(100)))
    d.run(3)
    assert d.state.phase is Phase.PAUSED
    assert d.state.pause_until is not None
    d.run(20)
    assert d.state.phase is Phase.PAUSED
    d.run(20)
    assert d.state.phase is Phase.COMPLETED


def test_promote_skips_a_pause_and_is_refused_while_progressing() -> None:
    d = driver((SetWeight(20), Pause(timedelta(hours=1)), SetWeight(100)))
    with pytest.raises(RolloutCommandError, match="nothing to promote, the rollout is progressing"):
        d.send(Promote("p-0"))
    d.run(3)
    assert d.state.phase is Phase.PAUSED
    d.send(Promote("p-1"))
    assert d.state.step_index == 2
    d.run()
    assert d.state.phase is Phase.COMPLETED


def analysis_driver(failure_limit: int = 0) -> Driver:
    step = Analysis(CHECKS, window=timedelta(seconds=30), failure_limit=failure_limit)
    d = driver((SetWeight(25), step, SetWeight(100)))
    d.run(3)
    assert d.state.phase is Phase.ANALYSING
    return d


def measure(d: Driver, n: int, error_rate: float) -> None:
    d.send(
        AnalysisResult(
            f"m-{n}",
            d.state.step_index,
            d.now,
            Measurement(100, error_rate, timedelta(milliseconds=20), None),
        )
    )


def test_an_analysis_that_fails_its_condition_rolls_back() -> None:
    d = analysis_driver()
    assert d.world.analyses[0].release == C
    measure(d, 1, 0.2)
    assert d.state.phase is Phase.ABORTED
    assert "error rate 20.00% above 1.00%" in d.state.failure
    d.run()
    assert d.world.router == {S: 100}
    assert d.world.instances[C] == 0


def test_an_analysis_tolerates_up_to_its_failure_limit_then_passes() -> None:
    d = analysis_driver(failure_limit=1)
    measure(d, 1, 0.2)
    measure(d, 2, 0.0)
    assert d.state.phase is Phase.ANALYSING
    assert d.state.analysis is not None
    assert (d.state.analysis.measurements, d.state.analysis.failures) == (2, 1)
    d.run()
    assert d.state.phase is Phase.COMPLETED


def test_an_analysis_without_any_measurement_fails() -> None:
    d = analysis_driver()
    d.run(40)
    assert d.state.phase is Phase.ABORTED
    assert "no measurement arrived within 30s" in d.state.failure


def test_a_late_measurement_for_another_step_is_ignored() -> None:
    d = analysis_driver()
    before = d.state
    d.send(AnalysisResult("late", 0, d.now, Measurement(1, 1.0, None, None)))
    assert d.state.analysis == before.analysis
    assert d.state.phase is Phase.ANALYSING


def test_rollback_goes_straight_to_the_stable_release_and_pins() -> None:
    d = driver((SetWeight(50), Pause(), SetWeight(100)))
    d.run(5)
    assert d.world.router == {S: 50, C: 50}
    actions = d.send(Rollback("rb-1", by="ann"))
    # the stable instance still serving takes all traffic in the same transition
    assert SetRouterWeights(((S, 100),)) in actions
    assert d.state.phase is Phase.ROLLED_BACK
    assert d.world.pinned
    assert d.world.stable == S
    d.run()
    assert d.state.finished
    assert d.world.instances == {S: 4, C: 0}


def test_rollback_to_a_named_release_starts_it_then_moves_traffic() -> None:
    d = driver((SetWeight(100),))
    d.run()
    assert d.state.phase is Phase.COMPLETED
    old = 7
    state = new_rollout("demo", "prod", stable=C, replicas=4, steps=THREE_STEPS)
    d.state = state
    d.send(Rollback("rb-2", to=old))
    assert d.world.instances[old] == 4
    assert d.world.router == {C: 100}  # not healthy yet: the current release keeps serving
    d.run()
    assert d.world.router == {old: 100}
    assert d.world.instances == {S: 0, C: 0, old: 4}
    assert d.world.stable == old


def test_abort_returns_to_stable_and_retry_asks_for_a_new_rollout() -> None:
    d = driver((SetWeight(100),))
    while d.world.router != {C: 100}:
        d.round()
    assert d.state.phase is Phase.PROGRESSING
    assert d.world.instances[S] == 0  # all traffic on the canary: the stable is gone
    actions = d.send(Abort("a-1", by="bob", reason="wrong config"))
    assert d.state.phase is Phase.ABORTED
    assert d.state.failure == "aborted by bob: wrong config"
    assert EnsureInstances(S, 4) in actions
    assert d.world.router == {C: 100}  # until the stable is healthy again
    d.run()
    assert d.world.router == {S: 100}
    assert d.state.weight == 0
    actions = d.send(Retry("t-1"))
    assert RetryRollout(C) in actions
    assert d.state.phase is Phase.ABORTED


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (Abort("x"), "already completed; use berth rollback"),
        (Resume("x"), "nothing to resume, the rollout is completed"),
        (Retry("x"), "only an aborted rollout can be retried"),
        (Rollback("x"), "a rollback of a finished rollout starts a new one"),
        (Start("x", 9), "has already started"),
    ],
)
def test_commands_that_do_not_fit_a_finished_rollout_are_refused(
    command: object, message: str
) -> None:
    d = driver((SetWeight(100),))
    d.run()
    before = d.state
    with pytest.raises(RolloutCommandError, match=message):
        d.send(command)
    assert d.state is before


def test_a_first_release_goes_straight_to_100() -> None:
    d = driver((SetWeight(10), Pause(), SetWeight(50)), stable=None)
    d.run()
    assert d.state.phase is Phase.COMPLETED
    assert d.world.weight_history == [{C: 100}]
    with pytest.raises(RolloutCommandError, match="no earlier release"):
        transition(
            new_rollout("demo", "prod", stable=None, replicas=1, steps=THREE_STEPS),
            Rollback("r"),
            T0,
        )


def test_starting_the_stable_release_again_is_refused() -> None:
    state = new_rollout("demo", "prod", stable=S, replicas=2, steps=THREE_STEPS)
    with pytest.raises(RolloutCommandError, match="already the stable release"):
        transition(state, Start("s", S), T0)


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "most"),
    [(10, 1, 0, 11), (10, "25%", 0, 13), (4, 0, 1, 5), (1, 0, 1, 2), (6, 0, 2, 7)],
)
def test_instances_stay_within_surge_and_the_rollout_still_finishes(
    replicas: int, surge: int | str, unavailable: int, most: int
) -> None:
    from pipeline import units

    max_surge = units.parse_percent(surge) if isinstance(surge, str) else surge
    d = driver(
        (SetWeight(10), SetWeight(60), SetWeight(100)),
        replicas=replicas,
        options=RolloutOptions(max_surge=max_surge, max_unavailable=unavailable),
    )
    d.run(100)
    assert d.state.phase is Phase.COMPLETED
    assert d.world.most_instances <= most


def test_a_lost_host_moves_instances_and_is_reported_once() -> None:
    d = driver()
    d.run(1)
    actions = d.send(HostLost("h-1", "host-3"))
    assert EnsureInstances(S, 3, ("host-3",)) in actions
    assert EnsureInstances(C, 1, ("host-3",)) in actions
    assert d.state.lost_hosts == ("host-3",)
    assert transition(d.state, HostLost("h-2", "host-3"), d.now)[1] == ()


def test_replays_change_nothing() -> None:
    d = driver((SetWeight(20), Pause(), SetWeight(100)))
    d.run(3)
    for event in (Resume("r-1"), d.world.observe(d.now)):
        d.send(event)
        after = d.state
        assert transition(after, event, d.now) == (after, ())
    assert transition(d.state, Tick(), d.now) == (d.state, ())
    assert transition(d.state, Start("start-1", C), d.now) == (d.state, ())


@pytest.mark.parametrize(
    ("measurement", "problems"),
    [
        (Measurement(10, 0.0, timedelta(milliseconds=10), None), []),
        (
            Measurement(10, 0.5, timedelta(milliseconds=10), None),
            ["error rate 50.00% above 1.00% (10 requests)"],
        ),
        (Measurement(10, 0.0, timedelta(seconds=2), None), ["p99 latency 2s above 500ms"]),
        (Measurement(0, None, None, None), ["no error rate measured", "no p99 latency measured"]),
    ],
)
def test_evaluate_names_every_failed_check(measurement: Measurement, problems: list[str]) -> None:
    assert evaluate(CHECKS, measurement) == problems


def test_health_success_check() -> None:
    checks = AnalysisChecks(min_health_success=0.99)
    assert evaluate(checks, Measurement(health_success=0.5)) == [
        "health probes 50.00% successful, below 99.00%"
    ]
    assert evaluate(checks, Measurement(health_success=1.0)) == []


def _observed(observation: Observation) -> object:
    from pipeline.rollout.events import InstancesObserved

    return InstancesObserved(observation)


def test_state_is_frozen() -> None:
    state = new_rollout("demo", "prod", stable=S, replicas=1, steps=THREE_STEPS)
    assert isinstance(state, RolloutState)
    with pytest.raises(AttributeError):
        state.phase = Phase.COMPLETED  # type: ignore[misc]
