"""The rollout engine: observe, decide, persist, act — level-triggered.

One pass over a rollout (:meth:`Engine.step`): read its state from the store, observe
the agents' inventories, run :func:`~pipeline.rollout.machine.transition` for the
observation, the time, lost hosts, a due analysis measurement and any command, then
write the new state *before* acting on it — with its audit events and a new stable
release in the same transaction, compare-and-set on the rollout's version — and finally
let the :class:`~pipeline.rollout.converge.Converger` bring hosts and router in line
with the state. The agents' API is idempotent by instance id and the converger compares
wanted with observed, so a process killed at any instant resumes without a duplicate
or an orphaned container.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pipeline.appspec import AppSpec
from pipeline.logs import get_logger
from pipeline.rollout.analysis import Analyser
from pipeline.rollout.codec import state_from_json, state_to_json
from pipeline.rollout.converge import Converger, Desired
from pipeline.rollout.entry import ENTRY_PORT, EntryAddresses
from pipeline.rollout.errors import RolloutError
from pipeline.rollout.events import (
    Action,
    Event,
    HostLost,
    InstancesObserved,
    RecordEvent,
    RetryRollout,
    SetStable,
    Tick,
)
from pipeline.rollout.hosts import HostDirectory, HostSnapshot
from pipeline.rollout.instances import instance_spec, observation, observed_instances
from pipeline.rollout.machine import transition
from pipeline.rollout.model import Phase, RolloutState
from pipeline.rollout.placement import eligible_hosts
from pipeline.rollout.standby import held_stable, hide_surplus, parked_during, without
from pipeline.secrets import Secret, SecretSource
from pipeline.settings import Environment, Settings
from pipeline.store import Store
from pipeline.store.clock import Clock
from pipeline.store.releases import Release
from pipeline.store.rollouts import Rollout

__all__ = ["EVENT_ACTIONS", "Engine", "Outcome", "event_action"]

log = get_logger("rollout.engine")

EVENT_ACTIONS = {
    "rollout_started": "rollout.started",
    "step_started": "rollout.step",
    "weight_set": "rollout.step",
    "rollout_completed": "rollout.finished",
    "rollout_aborted": "rollout.aborted",
    "rolled_back": "rollout.rolled_back",
}
"""The machine's record kinds -> audit actions (promotion's history reads these names)."""

ENGINE_ACTOR = "berth"
ENGINE_SOURCE = "system:rollout"
QUEUED = "queued"
"""Key of the rollout document holding a start that waits for this rollout to end."""


def event_action(kind: str) -> str:
    return EVENT_ACTIONS.get(kind, f"rollout.{kind}")


@dataclass
class Outcome:
    """What a pass decided that the caller acts on after the store write."""

    state: RolloutState
    reached: int | None = None
    retry: int | None = None
    queued: Mapping[str, Any] | None = None
    written: bool = False
    actions: tuple[Action, ...] = field(default=())


class Engine:
    """Reconciles rollouts against the hosts; see the module docstring."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        hosts: HostDirectory,
        converger: Converger,
        *,
        clock: Clock,
        image_reference: Callable[[Release], str],
        entries: EntryAddresses | None = None,
        analyser: Analyser | None = None,
        keep_releases: int = 3,
        secrets: Mapping[SecretSource, Secret] | None = None,
        standby: timedelta = timedelta(0),
    ) -> None:
        self.store = store
        self.settings = settings
        self.hosts = hosts
        self.converger = converger
        self.clock = clock
        self.image_reference = image_reference
        self.entries = entries
        self.analyser = analyser or Analyser()
        self.keep_releases = keep_releases
        self.secrets: Mapping[SecretSource, Secret] = secrets or {}
        self.standby = standby
        self._releases: dict[int, Release] = {}
        self._specs: dict[int, AppSpec] = {}
        self._prepared: set[int] = set()
        self._bound: set[tuple[str, str]] = set()

    # --- facts ------------------------------------------------------------------------

    def release(self, release_id: int) -> Release:
        found = self._releases.get(release_id)
        if found is None:
            found = self._releases[release_id] = self.store.get_release(release_id)
        return found

    def appspec(self, release_id: int) -> AppSpec:
        found = self._specs.get(release_id)
        if found is None:
            release = self.release(release_id)
            try:
                found = AppSpec.model_validate(dict(release.spec))
            except ValueError as exc:
                raise RolloutError(
                    f"release {release_id} of {release.app}: its app spec is not valid ({exc})"
                ) from exc
            self._specs[release_id] = found
        return found

    def environment(self, env: str) -> Environment:
        try:
            return self.settings.environment(env)
        except KeyError:
            raise RolloutError(
                f"environment {env!r} is not in {self.settings.source}; add it under environments:"
            ) from None

    def replicas(self, env: str, release_id: int) -> int:
        spec = self.appspec(release_id)
        return spec.run.replicas.get(env, self.environment(env).replicas)

    # --- one pass ---------------------------------------------------------------------

    def step(
        self,
        rollout: Rollout,
        snapshots: Mapping[str, HostSnapshot],
        commands: Sequence[Event] = (),
        *,
        actor: str = ENGINE_ACTOR,
        source: str = ENGINE_SOURCE,
        stop: bool = True,
    ) -> Outcome:
        """Observe, decide and persist one rollout, then converge the hosts to it
        (``stop=False``: leaving instances are unrouted now and stopped by the next pass).

        Commands raise :class:`~pipeline.rollout.errors.RolloutCommandError` when they
        do not fit the phase; :class:`ConflictError` when another writer was faster."""
        app, env = rollout.app, rollout.env
        state = state_from_json(rollout.state)
        environment = self.environment(env)
        eligible = {h.name for h in eligible_hosts(
            [s.capacity() for s in snapshots.values()], environment.host_selector
        )}  # fmt: skip
        instances = observed_instances(
            app,
            env,
            {
                n: s.instances
                for n, s in snapshots.items()
                if s.instances is not None and not s.lost
            },
        )
        # Parked instances are kept for a rollback, not part of the rollout: the machine
        # sees the old stable gone once the canary has all the traffic.
        seen = without(instances, parked_during(state, self.standby))
        held = held_stable(state, self.standby)
        if held is not None:
            # the held stable's surplus runs on for a rollback; the machine need not see it
            seen = hide_surplus(seen, held, state.allocation(held).replicas)
        # A host that missed a heartbeat but is not yet lost may still run instances:
        # its silence is no fact to decide on.
        complete = all(
            s.instances is not None or s.lost for n, s in snapshots.items() if n in eligible
        )
        now = self.clock.now()
        events: list[Event] = list(commands)
        events += [
            HostLost(f"host-lost-{n}", n)
            for n, s in sorted(snapshots.items())
            if s.lost and n in eligible and n not in state.lost_hosts
        ]
        if complete:
            events.append(InstancesObserved(observation(now, seen)))
        events.append(Tick())
        new, actions = state, list[Action]()
        for event in events:
            new, more = transition(new, event, now)
            actions += more
        port = self._port(new)
        measured = self.analyser.due(rollout.id, new, seen, port, now)
        if measured is not None:
            new, more = transition(new, measured, now)
            actions += more
            new, more = transition(new, Tick(), now)
            actions += more
        outcome = Outcome(new, actions=tuple(actions))
        if new != state:
            self._write(rollout, new, actions, actor, source)
            outcome.written = True
            if new.finished:
                self.analyser.forget(rollout.id)
                if new.phase is Phase.COMPLETED:
                    outcome.reached = new.canary
                queued = rollout.state.get(QUEUED)
                outcome.queued = queued if isinstance(queued, Mapping) else None
        outcome.retry = next((a.release for a in actions if isinstance(a, RetryRollout)), None)
        if complete:
            self._prepare(rollout.id, new, snapshots, eligible)
            self.converge(
                new, without(instances, parked_during(new, self.standby)), snapshots, stop=stop
            )
        return outcome

    def converge(
        self,
        state: RolloutState,
        instances: Sequence[Any],
        snapshots: Mapping[str, HostSnapshot],
        *,
        stop: bool = True,
    ) -> None:
        environment = self.environment(state.env)
        newest = max(self._releases_of(state), default=None)
        spec = self.appspec(newest) if newest is not None else None
        memory = (spec.run.resources.memory or 0) if spec else 0
        desired = Desired.of(state, environment.host_selector)
        held = held_stable(state, self.standby)
        if held is not None and parked_during(state, self.standby) is None:
            # the stable release keeps its full size until it is parked (see standby.py)
            desired = dataclasses.replace(
                desired, replicas={**desired.replicas, held: state.replicas}
            )
        self.converger.converge(
            desired,
            instances,
            snapshots,
            lambda release: self.spec_for(state.app, state.env, release),
            address=self.entry_address(state.app, state.env),
            port=ENTRY_PORT,
            target_port=self._port(state),
            memory=memory,
            stop=stop,
        )

    def spec_for(self, app: str, env: str, release_id: int) -> dict[str, Any]:
        return instance_spec(
            app,
            env,
            release_id,
            image=self.image_reference(self.release(release_id)),
            spec=self.appspec(release_id),
            variables=self.environment(env).variables,
            secrets=self.secret_values(env),
        )

    def secret_values(self, env: str) -> dict[str, str]:
        """The environment's secrets by variable name, revealed for the agent's spec only."""
        values: dict[str, str] = {}
        missing: list[str] = []
        for name, source in sorted(self.environment(env).secrets.items()):
            secret = self.secrets.get(source)
            if secret is None:
                missing.append(f"{name} ({source.describe()})")
            else:
                values[name] = secret.reveal()
        if missing:
            raise RolloutError(
                f"environment {env!r}: secret(s) {', '.join(missing)} were not resolved; "
                "berth serve resolves them at start, so restart it with the sources readable"
            )
        return values

    def entry_address(self, app: str, env: str) -> Any:
        if self.entries is None:
            return None
        address = self.entries.address(app, env)
        if (app, env) not in self._bound:
            self.entries.bind(address)
            self._bound.add((app, env))
        return address

    def unbind(self, app: str, env: str) -> None:
        self._bound.discard((app, env))

    # --- internals ----------------------------------------------------------------------

    def _write(
        self,
        rollout: Rollout,
        state: RolloutState,
        actions: Sequence[Action],
        actor: str,
        source: str,
    ) -> None:
        document = {**state_to_json(state)}
        if QUEUED in rollout.state:
            document[QUEUED] = rollout.state[QUEUED]
        with self.store.transaction() as tx:
            tx.update_rollout(
                rollout.id,
                expected_version=rollout.version,
                phase=str(state.phase),
                step_index=state.step_index,
                weight=state.weight,
                state=document,
                finished=state.finished,
            )
            for action in actions:
                if isinstance(action, RecordEvent):
                    tx.append_event(
                        actor,
                        event_action(action.kind),
                        source=source,
                        app=state.app,
                        env=state.env,
                        release_id=state.target if state.terminal else state.canary,
                        detail={"message": action.message, "rollout": rollout.id},
                    )
                elif isinstance(action, SetStable):
                    tx.set_stable_release(
                        state.app, state.env, action.release, pinned=action.pinned
                    )

    def _port(self, state: RolloutState) -> int | None:
        releases = self._releases_of(state)
        for release in sorted(releases, reverse=True):
            port = self.appspec(release).run.port
            if port is not None:
                return port
        return None

    def _releases_of(self, state: RolloutState) -> set[int]:
        found = {a.release for a in state.allocations}
        found |= {r for r in (state.stable, state.canary, state.target) if r is not None}
        return found

    def _prepare(
        self,
        rollout_id: int,
        state: RolloutState,
        snapshots: Mapping[str, HostSnapshot],
        eligible: set[str],
    ) -> None:
        """Pull and pin the rollout's images on every eligible host, once per rollout, so
        that neither the canary's start nor a rollback waits for a pull."""
        if rollout_id in self._prepared:
            return
        self._prepared.add(rollout_id)
        releases = sorted(self._releases_of(state))[-self.keep_releases :]
        targets = [
            (host, self.release(r)) for host in sorted(eligible) for r in releases
            if not snapshots[host].lost
        ]  # fmt: skip

        def pull_and_pin(item: tuple[str, Release]) -> None:
            host, release = item
            client = self.hosts.client(host)
            try:
                client.pull(self.image_reference(release))
                client.pin(release.digest)
            except Exception as exc:  # a failed pull is retried by the start
                log.warning("prepare release %s on %s: %s", release.id, host, exc)

        self.hosts.map(pull_and_pin, targets)
