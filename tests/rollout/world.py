"""A small, working model of the hosts for driving the rollout machine in unit tests.

It executes the machine's actions the way agents and the router would (instance counts
per release, router weights, the stable release) and reports observations; a release
listed in ``failing`` starts instances that fail their health check. No timing, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.rollout.events import (
    Action,
    EnsureInstances,
    InstancesObserved,
    RecordEvent,
    RetryRollout,
    SetRouterWeights,
    SetStable,
    StartAnalysis,
    StopInstances,
)
from pipeline.rollout.machine import transition
from pipeline.rollout.model import Observation, ReleaseHealth, RolloutState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class World:
    """Instances per release, the router's weights and what was recorded."""

    instances: dict[int, int] = field(default_factory=dict)
    failing: set[int] = field(default_factory=set)
    router: dict[int, int] = field(default_factory=dict)
    stable: int | None = None
    pinned: bool = False
    analyses: list[StartAnalysis] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    records: list[RecordEvent] = field(default_factory=list)
    weight_history: list[dict[int, int]] = field(default_factory=list)
    most_instances: int = 0

    def apply(self, actions: tuple[Action, ...]) -> None:
        for action in actions:
            if isinstance(action, EnsureInstances):
                self.instances[action.release] = max(
                    self.instances.get(action.release, 0), action.count
                )
            elif isinstance(action, StopInstances):
                self.instances[action.release] = min(
                    self.instances.get(action.release, 0), action.keep
                )
            elif isinstance(action, SetRouterWeights):
                assert sum(w for _, w in action.weights) in (0, 100), action
                self.router = dict(action.weights)
                self.weight_history.append(dict(self.router))
            elif isinstance(action, SetStable):
                self.stable = action.release
                if action.pinned is not None:
                    self.pinned = action.pinned
            elif isinstance(action, StartAnalysis):
                self.analyses.append(action)
            elif isinstance(action, RetryRollout):
                self.retried.append(action.release)
            else:
                self.records.append(action)
            self.most_instances = max(self.most_instances, sum(self.instances.values()))

    def observe(self, at: datetime) -> InstancesObserved:
        releases = tuple(
            ReleaseHealth(
                release,
                running=count,
                healthy=0 if release in self.failing else count,
                failed=count if release in self.failing else 0,
            )
            for release, count in sorted(self.instances.items())
            if count
        )
        return InstancesObserved(Observation(at, releases))


@dataclass
class Driver:
    """Runs reconcile rounds: observe, transition, apply; the clock moves 1 s a round."""

    state: RolloutState
    world: World
    now: datetime = T0

    def send(self, event: object) -> tuple[Action, ...]:
        self.state, actions = transition(self.state, event, self.now)  # type: ignore[arg-type]
        self.world.apply(actions)
        return actions

    def round(self, step: timedelta = timedelta(seconds=1)) -> None:
        self.now += step
        self.send(self.world.observe(self.now))

    def run(self, rounds: int = 50, step: timedelta = timedelta(seconds=1)) -> None:
        for _ in range(rounds):
            if self.state.finished:
                return
            self.round(step)
