"""Properties of the rollout machine under any sequence of events (hypothesis).

- the weight stays within 0..100 and moves only to the next configured weight;
- routed weights always sum to 100 (or nothing is routed);
- a finished phase is final;
- replaying an event (a command, an observation, a tick at the same instant) changes nothing;
- an abort at any point ends with the stable release at 100 % and the canary stopped.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pipeline.rollout.errors import RolloutCommandError
from pipeline.rollout.events import (
    Abort,
    AnalysisResult,
    Event,
    HostLost,
    Measurement,
    Promote,
    Resume,
    Retry,
    Rollback,
    Start,
    Tick,
)
from pipeline.rollout.machine import new_rollout, transition
from pipeline.rollout.model import (
    TERMINAL_PHASES,
    Analysis,
    AnalysisChecks,
    Pause,
    Phase,
    RolloutOptions,
    SetWeight,
    Step,
)
from tests.rollout.world import Driver, World

pytestmark = pytest.mark.unit

S, C = 1, 2


@st.composite
def step_lists(draw: st.DrawFn) -> tuple[Step, ...]:
    weights = sorted(draw(st.sets(st.integers(0, 100), min_size=1, max_size=4)))
    steps: list[Step] = []
    for weight in weights:
        steps.append(SetWeight(weight))
        extra = draw(st.sampled_from(["none", "pause", "timed", "analysis"]))
        if extra == "pause":
            steps.append(Pause())
        elif extra == "timed":
            steps.append(Pause(timedelta(seconds=draw(st.integers(1, 20)))))
        elif extra == "analysis":
            steps.append(
                Analysis(
                    AnalysisChecks(max_error_rate=0.05),
                    window=timedelta(seconds=draw(st.integers(1, 20))),
                    failure_limit=draw(st.integers(0, 2)),
                )
            )
    return tuple(steps)


class RolloutMachine(RuleBasedStateMachine):
    """Random events against the machine, with a small world executing its actions."""

    def __init__(self) -> None:
        super().__init__()
        self.d: Driver
        self.counter = 0
        self.replayable: list[Event] = []
        self.visited: list[int] = []
        self.final_phase: Phase | None = None

    @initialize(
        steps=step_lists(),
        replicas=st.integers(1, 6),
        has_stable=st.booleans(),
        surge=st.integers(0, 2),
        unavailable=st.integers(0, 2),
        abort_on_failure=st.booleans(),
    )
    def start(
        self,
        steps: tuple[Step, ...],
        replicas: int,
        has_stable: bool,
        surge: int,
        unavailable: int,
        abort_on_failure: bool,
    ) -> None:
        stable = S if has_stable else None
        options = RolloutOptions(
            max_surge=surge or (0 if unavailable else 1),
            max_unavailable=unavailable,
            abort_on_failure=abort_on_failure,
            progress_deadline=timedelta(seconds=120),
        )
        state = new_rollout(
            "demo", "prod", stable=stable, replicas=replicas, steps=steps, options=options
        )
        world = World(
            instances={} if stable is None else {stable: replicas},
            router={} if stable is None else {stable: 100},
            stable=stable,
        )
        self.d = Driver(state, world)
        self.send(Start(self.new_id(), C))

    def new_id(self) -> str:
        self.counter += 1
        return f"cmd-{self.counter}"

    def send(self, event: Event) -> bool:
        before = self.d.state
        try:
            self.d.send(event)
        except RolloutCommandError:
            assert self.d.state is before
            return False
        self.after(before.weight)
        if not isinstance(event, Tick):
            self.replayable.append(event)
        return True

    def after(self, previous_weight: int) -> None:
        state = self.d.state
        if self.final_phase is not None:
            assert state.phase is self.final_phase, "a finished phase changed"
        elif state.phase in TERMINAL_PHASES:
            self.final_phase = state.phase
        if state.weight != previous_weight and state.phase not in (
            Phase.ABORTED,
            Phase.ROLLED_BACK,
        ):
            self.visited.append(state.weight)
            # the rollout starts at 0 %, so a configured 0 is never a move
            configured = [s.weight for s in state.steps if isinstance(s, SetWeight) and s.weight]
            assert self.visited == configured[: len(self.visited)], (
                f"weights {self.visited} skipped a step of {configured}"
            )

    # --- rules --------------------------------------------------------------------------

    @rule(seconds=st.integers(1, 15))
    def observe(self, seconds: int) -> None:
        self.d.now += timedelta(seconds=seconds)
        self.send(self.d.world.observe(self.d.now))

    @rule(seconds=st.integers(0, 10))
    def tick(self, seconds: int) -> None:
        self.d.now += timedelta(seconds=seconds)
        self.send(Tick())
        after = self.d.state
        assert transition(after, Tick(), self.d.now) == (after, ()), "a second tick did something"

    @rule(rounds=st.integers(1, 6))
    def reconcile(self, rounds: int) -> None:
        """Several observe rounds in a row, so that rollouts get far."""
        for _ in range(rounds):
            self.observe(2)

    @rule(dice=st.integers(0, 5))
    def canary_health(self, dice: int) -> None:
        # rarely make the canary fail, so that most runs get through several steps
        if dice == 0:
            self.d.world.failing.add(C)
        else:
            self.d.world.failing.discard(C)

    @rule(error_rate=st.floats(0, 0.2))
    def measurement(self, error_rate: float) -> None:
        self.send(
            AnalysisResult(
                self.new_id(),
                self.d.state.step_index,
                self.d.now,
                Measurement(100, error_rate, None, None),
            )
        )

    @rule(command=st.sampled_from(["resume", "promote", "retry", "host_lost"]))
    def command(self, command: str) -> None:
        event: Event = {
            "resume": Resume(self.new_id()),
            "promote": Promote(self.new_id()),
            "retry": Retry(self.new_id()),
            "host_lost": HostLost(self.new_id(), "host-2"),
        }[command]
        self.send(event)

    @rule(dice=st.integers(0, 7))
    def rollback(self, dice: int) -> None:
        if (dice == 0 or self.d.state.weight > 0) and self.send(Rollback(self.new_id())):
            assert self.d.state.phase is Phase.ROLLED_BACK
            assert self.d.world.pinned

    @rule(index=st.integers(0, 1000))
    def replay(self, index: int) -> None:
        if not self.replayable:
            return
        event = self.replayable[index % len(self.replayable)]
        state = self.d.state
        assert transition(state, event, self.d.now) == (state, ()), f"replaying {event} acted"

    @rule(dice=st.integers(0, 7))
    def abort_and_settle(self, dice: int) -> None:
        stable = self.d.state.stable
        # mostly once traffic has moved, where going back is the interesting part
        if self.d.state.terminal or (dice != 0 and self.d.state.weight == 0):
            return
        self.d.world.failing.discard(stable or 0)
        assert self.send(Abort(self.new_id(), reason="property"))
        for _ in range(30):
            if self.d.state.finished:
                break
            self.observe(1)
        state = self.d.state
        assert state.finished
        assert state.phase is Phase.ABORTED
        assert state.weight == 0
        expected = {} if stable is None else {stable: 100}
        assert self.d.world.router == expected
        assert self.d.world.instances.get(C, 0) == 0
        if stable is not None:
            assert self.d.world.instances[stable] == state.replicas

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def weights_in_range(self) -> None:
        if not hasattr(self, "d"):
            return
        state = self.d.state
        assert 0 <= state.weight <= 100
        routed = sum(a.weight for a in state.allocations)
        assert routed in (0, 100), state.allocations
        assert all(a.replicas >= 0 for a in state.allocations)
        assert sum(self.d.world.router.values()) in (0, 100)


RolloutMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRolloutMachine = RolloutMachine.TestCase
