"""The rollout service: what the API, the CLI, chat and promotion call.

:class:`RolloutService` implements promotion's ``Rollouts`` (:meth:`start`) and
``EntryPoints`` (:meth:`url`), takes the commands (abort, resume, retry, rollback),
answers :meth:`status`, and runs the :class:`~pipeline.rollout.engine.Engine` — once with
:meth:`reconcile_once`, or on a background thread that reconciles every ``interval`` and
at once after :meth:`wake`. Every command is a machine event with a fresh id, persisted
with its audit event before anything is done about it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pipeline.errors import BerthError
from pipeline.logs import get_logger
from pipeline.rollout.analysis import Analyser
from pipeline.rollout.codec import state_from_json, state_to_json
from pipeline.rollout.converge import Converger, Desired
from pipeline.rollout.engine import (
    ENGINE_ACTOR,
    ENGINE_SOURCE,
    QUEUED,
    Engine,
    Outcome,
    event_action,
)
from pipeline.rollout.entry import ENTRY_PORT, EntryAddresses
from pipeline.rollout.errors import RolloutCommandError, RolloutError
from pipeline.rollout.events import (
    Abort,
    Event,
    Promote,
    RecordEvent,
    Resume,
    Retry,
    Rollback,
    SetStable,
    Start,
)
from pipeline.rollout.hosts import HostDirectory, HostSnapshot
from pipeline.rollout.instances import observed_instances
from pipeline.rollout.machine import new_rollout, transition
from pipeline.rollout.model import (
    Phase,
    RolloutState,
    normalise_steps,
    options_from_spec,
    steps_from_spec,
)
from pipeline.rollout.nftrouter import Router
from pipeline.rollout.placement import eligible_hosts
from pipeline.rollout.standby import parked_after, without
from pipeline.secrets import Secret, SecretSource
from pipeline.settings import Settings
from pipeline.store import Store
from pipeline.store.clock import Clock, SystemClock
from pipeline.store.errors import ConflictError
from pipeline.store.releases import Release
from pipeline.store.rollouts import Rollout

__all__ = ["EnvironmentView", "RolloutService", "RolloutView"]

log = get_logger("rollout.service")

Reached = Callable[[str, str, int], None]


@dataclass(frozen=True)
class RolloutView:
    """One rollout as people see it."""

    id: int
    app: str
    env: str
    phase: str
    stable: int | None
    canary: int | None
    weight: int
    step: int
    steps: int
    failure: str
    active: bool

    @classmethod
    def of(cls, rollout: Rollout) -> RolloutView:
        state = state_from_json(rollout.state)
        return cls(
            id=rollout.id,
            app=rollout.app,
            env=rollout.env,
            phase=str(state.phase),
            stable=state.stable,
            canary=state.canary,
            weight=state.weight,
            step=min(state.step_index + 1, len(state.steps)),
            steps=len(state.steps),
            failure=state.failure,
            active=rollout.active,
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EnvironmentView:
    """What runs in one environment of one app, for ``berth status``."""

    app: str
    env: str
    stable: int | None
    pinned: bool
    url: str | None
    rollout: RolloutView | None
    health: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    traffic: Mapping[int, int] = field(default_factory=dict)
    """New connections per release, as counted by the router."""

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "env": self.env,
            "stable": self.stable,
            "pinned": self.pinned,
            "url": self.url,
            "rollout": None if self.rollout is None else self.rollout.to_json(),
            "health": {str(r): dict(h) for r, h in self.health.items()},
            "traffic": {str(r): n for r, n in self.traffic.items()},
        }


class RolloutService:
    """Grey releases on the hosts; implements promotion's ``Rollouts`` and ``EntryPoints``.

    ``secrets`` (resolved at ``berth serve`` start) become the instances' environment
    variables named by each environment's ``secrets:``. ``standby`` seconds after a
    rollout completes, the previous release's instances still run out of the router
    (:mod:`~pipeline.rollout.standby`), so a rollback in that time is a router switch;
    0 stops them with the last step.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        hosts: HostDirectory,
        router: Router,
        *,
        clock: Clock | None = None,
        image_reference: Callable[[Release], str],
        on_reached: Reached | None = None,
        entries: EntryAddresses | None = None,
        analyser: Analyser | None = None,
        keep_releases: int = 3,
        drain: float = 0.2,
        secrets: Mapping[SecretSource, Secret] | None = None,
        standby: float = 30.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.hosts = hosts
        self.router = router
        self.clock = clock or SystemClock()
        self.on_reached = on_reached
        self.entries = entries
        self.standby = timedelta(seconds=standby)
        self.engine = Engine(
            store,
            settings,
            hosts,
            Converger(hosts, router, drain=drain),
            clock=self.clock,
            image_reference=image_reference,
            entries=entries,
            analyser=analyser,
            keep_releases=keep_releases,
            secrets=secrets,
            standby=self.standby,
        )
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._snapshots: dict[str, HostSnapshot] = {}

    # --- promotion's protocols ----------------------------------------------------------

    def start(self, app: str, env: str, release_id: int, *, actor: str, source: str) -> bool:
        """Begin moving ``env`` to ``release_id``; True when it already runs it (nothing to
        do). A rollout of another release still running is aborted first and this one
        starts when it has ended."""
        with self._lock:
            current = self.store.get_current_rollout(app, env)
            if current is not None and current.active:
                if current.to_release_id == release_id:
                    return False
                self._supersede(current, release_id, actor, source)
                return False
            if self.store.get_environment(app, env).stable_release_id == release_id:
                return True
            self._create(app, env, release_id, actor=actor, source=source)
        self.wake()
        return False

    def url(self, app: str, env: str) -> str | None:
        """``http://ADDR:PORT`` of (app, env); None without entry addresses (``hosts:``)."""
        if self.entries is None:
            return None
        return f"http://{self.entries.address(app, env)}:{ENTRY_PORT}"

    # --- commands -----------------------------------------------------------------------

    def abort(self, app: str, env: str, *, actor: str, source: str) -> RolloutView:
        """Back to the stable release; the rollout ends aborted."""
        return self._command(app, env, Abort(_id("abort"), by=actor), actor, source)

    def resume(self, app: str, env: str, *, actor: str, source: str) -> RolloutView:
        """Go on past a pause (or a failed step), or skip the running analysis."""
        rollout = self._active(app, env)
        phase = state_from_json(rollout.state).phase
        event: Event = (
            Resume(_id("resume"), by=actor)
            if phase is Phase.PAUSED
            else Promote(_id("promote"), by=actor)
        )
        return self._command(app, env, event, actor, source)

    def retry(self, app: str, env: str, *, actor: str, source: str) -> RolloutView:
        """Start the last rollout again, when it was aborted."""
        with self._lock:
            current = self.store.get_current_rollout(app, env)
            if current is None or current.active:
                raise RolloutCommandError(
                    f"{app}/{env}: there is no aborted rollout to retry"
                    + (" (one is running)" if current is not None else "")
                )
            state = state_from_json(current.state)
            _, actions = transition(state, Retry(_id("retry"), by=actor), self.clock.now())
            release = state.canary
            assert release is not None
            created = self._create(app, env, release, actor=actor, source=source)
            for action in actions:
                if isinstance(action, RecordEvent):
                    self._record(app, env, release, action, actor, source)
        self.wake()
        return RolloutView.of(created)

    def rollback(
        self, app: str, env: str, *, to: int | None = None, actor: str, source: str
    ) -> RolloutView:
        """Straight to the previous (or the named) release at 100 %, then pin ``env``."""
        with self._lock:
            current = self.store.get_current_rollout(app, env)
            if current is not None and current.active:
                view = self._command(app, env, Rollback(_id("rollback"), to, actor), actor, source)
                self.wake()
                return view
            environment = self.store.get_environment(app, env)
            stable = environment.stable_release_id
            target = to if to is not None else environment.previous_release_id
            if stable is None or target is None:
                raise RolloutCommandError(
                    f"{app}/{env}: there is no earlier release to roll back to; name one with --to"
                )
            if target == stable:
                raise RolloutCommandError(f"{app}/{env}: release {target} is already stable")
            self.engine.release(target)
            state = new_rollout(
                app, env, stable=stable, replicas=self.engine.replicas(env, stable), steps=()
            )
            now = self.clock.now()
            state, actions = transition(state, Rollback(_id("rollback"), target, actor), now)
            rollout = self._insert(app, env, target, stable, state, actions, actor, source)
            # a fresh look: the target's parked instances take the traffic in this very pass
            # if they are healthy now, not as they were at the last tick
            self._snapshots = self.hosts.poll()
            # the command returns once the traffic has moved; the woken background pass
            # stops the instances that left the router
            self._run(rollout, stop=False)
        self.wake()
        return RolloutView.of(self.store.get_rollout(rollout.id))

    def retire(self, app: str, env: str) -> None:
        """Take (app, env) off the hosts: stop its instances, remove its router entry and
        unbind its entry address. The store keeps its history."""
        with self._lock:
            snapshots = self.hosts.poll()
            inventories = {n: s.instances for n, s in snapshots.items() if s.instances is not None}
            instances = observed_instances(app, env, inventories)
            self.engine.converger.converge(
                Desired(app, env, {}, {}),
                instances,
                snapshots,
                lambda release: self.engine.spec_for(app, env, release),
                address=None,
                port=ENTRY_PORT,
                target_port=None,
            )
            self.router.remove(app, env)
            self.engine.converger.forget(app, env)
            if self.entries is not None:
                self.entries.unbind(self.entries.address(app, env))
                self.engine.unbind(app, env)

    # --- reading ------------------------------------------------------------------------

    def status(self, app: str | None = None) -> list[EnvironmentView]:
        """Per app and environment: stable release, running rollout, health, traffic."""
        apps = [app] if app is not None else [a.name for a in self.store.list_apps()]
        snapshots = self._snapshots or self.hosts.poll()
        inventories = {n: s.instances for n, s in snapshots.items() if s.instances is not None}
        views = []
        for name in apps:
            for environment in self.settings.environments:
                env = environment.name
                state = self.store.get_environment(name, env)
                rollout = self.store.get_current_rollout(name, env)
                if state.stable_release_id is None and rollout is None:
                    continue
                health: dict[int, dict[str, int]] = {}
                for instance in observed_instances(name, env, inventories):
                    counts = health.setdefault(
                        instance.release, {"running": 0, "healthy": 0, "failed": 0}
                    )
                    counts["running"] += instance.running
                    counts["healthy"] += instance.healthy
                    counts["failed"] += instance.failed
                try:
                    traffic = {r: c[0] for r, c in self.router.connections(name, env).items()}
                except RolloutError:
                    traffic = {}
                views.append(
                    EnvironmentView(
                        app=name,
                        env=env,
                        stable=state.stable_release_id,
                        pinned=state.pinned,
                        url=self.url(name, env),
                        rollout=None if rollout is None else RolloutView.of(rollout),
                        health=health,
                        traffic=traffic,
                    )
                )
        return views

    # --- the engine ---------------------------------------------------------------------

    def reconcile_once(self) -> None:
        """One level-triggered pass over every active rollout and settled environment."""
        reached: list[tuple[str, str, int]] = []
        with self._lock:
            self._snapshots = self.hosts.poll()
            busy: set[tuple[str, str]] = set()
            for rollout in self.store.list_active_rollouts():
                busy.add((rollout.app, rollout.env))
                try:
                    outcome = self._run(rollout)
                except ConflictError as exc:
                    log.info("rollout %s: %s", rollout.id, exc)
                    continue
                except RolloutError as exc:
                    log.warning(
                        "rollout %s of %s/%s: %s", rollout.id, rollout.app, rollout.env, exc
                    )
                    continue
                if outcome.reached is not None:
                    reached.append((rollout.app, rollout.env, outcome.reached))
            self._steady(busy)
        # outside the lock: promotion may start the next environment's rollout from here
        if self.on_reached is not None:
            for app, env, release in reached:
                self.on_reached(app, env, release)

    def start_background(self, interval: float = 0.5) -> None:
        """Reconcile on a thread every ``interval`` seconds and after each :meth:`wake`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.reconcile_once()
                except Exception:  # the loop must outlive one bad pass
                    log.exception("rollout reconcile failed; trying again")
                self._wake.wait(interval)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="berth-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    # --- internals ----------------------------------------------------------------------

    def _run(self, rollout: Rollout, commands: tuple[Event, ...] = (), *,
             actor: str = ENGINE_ACTOR, source: str = ENGINE_SOURCE,
             stop: bool = True) -> Outcome:  # fmt: skip
        snapshots = self._snapshots or self.hosts.poll()
        self._snapshots = snapshots
        outcome = self.engine.step(
            rollout, snapshots, commands, actor=actor, source=source, stop=stop
        )
        if outcome.retry is not None:
            self._create(rollout.app, rollout.env, outcome.retry, actor=actor, source=source)
        if outcome.queued is not None:
            queued = outcome.queued
            self._create(
                rollout.app,
                rollout.env,
                int(queued["release"]),
                actor=str(queued["actor"]),
                source=str(queued["source"]),
            )
        return outcome

    def _command(self, app: str, env: str, event: Event, actor: str, source: str) -> RolloutView:
        with self._lock:
            rollout = self._active(app, env)
            # a rollback answers once the traffic has moved (see rollback below)
            stop = not isinstance(event, Rollback)
            self._run(rollout, (event,), actor=actor, source=source, stop=stop)
            view = RolloutView.of(self.store.get_rollout(rollout.id))
        self.wake()
        return view

    def _active(self, app: str, env: str) -> Rollout:
        current = self.store.get_current_rollout(app, env)
        if current is None or not current.active:
            raise RolloutCommandError(f"{app}/{env}: no rollout is in progress")
        return current

    def _supersede(self, current: Rollout, release_id: int, actor: str, source: str) -> None:
        state = state_from_json(current.state)
        queued = {"release": release_id, "actor": actor, "source": source}
        document = {**dict(current.state), QUEUED: queued}
        self.store.update_rollout(current.id, expected_version=current.version, state=document)
        if state.phase is not Phase.PENDING:
            fresh = self.store.get_rollout(current.id)
            reason = f"superseded by release {release_id}"
            self._run(fresh, (Abort(_id("abort"), by=actor, reason=reason),), actor=actor,
                      source=source)  # fmt: skip
        self.wake()

    def _create(self, app: str, env: str, release_id: int, *, actor: str, source: str) -> Rollout:
        engine = self.engine
        spec = engine.appspec(release_id)
        environment = engine.environment(env)
        configured = spec.rollout.steps if spec.rollout is not None else environment.rollout.steps
        stable = self.store.get_environment(app, env).stable_release_id
        state = new_rollout(
            app,
            env,
            stable=stable,
            replicas=engine.replicas(env, release_id),
            steps=normalise_steps(steps_from_spec(configured)),
            options=options_from_spec(environment.rollout),
        )
        state, actions = transition(state, Start(_id("start"), release_id, actor), self.clock.now())
        return self._insert(app, env, release_id, stable, state, actions, actor, source)

    def _insert(
        self,
        app: str,
        env: str,
        release_id: int,
        stable: int | None,
        state: RolloutState,
        actions: tuple[Any, ...],
        actor: str,
        source: str,
    ) -> Rollout:
        with self.store.transaction() as tx:
            rollout = tx.create_rollout(
                app,
                env,
                release_id,
                phase=str(state.phase),
                from_release_id=stable,
                step_index=state.step_index,
                weight=state.weight,
                state=state_to_json(state),
            )
            for action in actions:
                if isinstance(action, RecordEvent):
                    tx.append_event(
                        actor,
                        event_action(action.kind),
                        source=source,
                        app=app,
                        env=env,
                        release_id=release_id,
                        detail={"message": action.message, "rollout": rollout.id},
                    )
                elif isinstance(action, SetStable):
                    tx.set_stable_release(app, env, action.release, pinned=action.pinned)
        return rollout

    def _record(
        self, app: str, env: str, release: int, action: RecordEvent, actor: str, source: str
    ) -> None:
        self.store.append_event(
            actor,
            event_action(action.kind),
            source=source,
            app=app,
            env=env,
            release_id=release,
            detail={"message": action.message},
        )

    def _steady(self, busy: set[tuple[str, str]]) -> None:
        """Environments without a running rollout keep their stable release at replicas
        (instances on lost hosts are replaced, orphans stopped)."""
        inventories = {
            n: s.instances
            for n, s in self._snapshots.items()
            if s.instances is not None and not s.lost
        }
        seen: set[tuple[str, str]] = set()
        for listing in inventories.values():
            for item in listing:
                labels = item.get("labels") or {}
                app, env = labels.get("berth.app"), labels.get("berth.env")
                if isinstance(app, str) and isinstance(env, str):
                    seen.add((app, env))
        # An environment with a stable release runs it even where no host has an instance
        # yet: hosts that came back empty (a new cluster, a restarted machine).
        configured = {e.name for e in self.settings.environments}
        for app in self.store.list_apps():
            for state in self.store.list_environments(app.name):
                if state.stable_release_id is not None and state.env in configured:
                    seen.add((app.name, state.env))
        for app, env in sorted(seen - busy):
            try:
                self._keep(app, env, inventories)
            except BerthError as exc:
                log.warning("%s/%s: %s", app, env, exc)

    def _keep(self, app: str, env: str, inventories: Mapping[str, Any]) -> None:
        stable = self.store.get_environment(app, env).stable_release_id
        environment = self.engine.environment(env)
        eligible = {h.name for h in eligible_hosts(
            [s.capacity() for s in self._snapshots.values()], environment.host_selector
        )}  # fmt: skip
        if any(
            s.instances is None and not s.lost for n, s in self._snapshots.items() if n in eligible
        ):
            return
        parked = parked_after(
            self.store.get_current_rollout(app, env), self.clock.now(), self.standby
        )
        instances = without(observed_instances(app, env, inventories), parked)
        if stable is None:
            desired = Desired(app, env, {}, {})
            target_port = None
        else:
            replicas = self.engine.replicas(env, stable)
            lost = tuple(sorted(n for n, s in self._snapshots.items() if s.lost))
            desired = Desired(
                app, env, {stable: replicas}, {stable: 100}, frozenset(), lost,
                dict(environment.host_selector),
            )  # fmt: skip
            target_port = self.engine.appspec(stable).run.port
        self.engine.converger.converge(
            desired,
            instances,
            self._snapshots,
            lambda release: self.engine.spec_for(app, env, release),
            address=self.engine.entry_address(app, env) if target_port else None,
            port=ENTRY_PORT,
            target_port=target_port,
        )


def _id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"
