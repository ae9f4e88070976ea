"""Bringing the hosts and the router in line with a rollout state (the engine's hands).

:class:`Converger` is level-triggered: it never executes a remembered list of actions,
it compares what the state wants (instances per release, traffic per release) with what
the agents report, and closes the gap. So a control plane that died after writing a
decision and before acting on it does the right thing when it looks again.

Order matters for clients: new instances first, then the router (only healthy
instances, and only instances that stay), a short drain, then the stops. Instances of
(app, env) that no release of the state wants are orphans and are stopped too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from pipeline.logs import get_logger
from pipeline.rollout.errors import PlacementError, RolloutError
from pipeline.rollout.hosts import HostDirectory, HostSnapshot
from pipeline.rollout.instances import ObservedInstance
from pipeline.rollout.model import RolloutState
from pipeline.rollout.nftrouter import Router
from pipeline.rollout.placement import Instance, plan_instances
from pipeline.rollout.router import Backend, Pool, RouterEntry
from runners.agent.errors import NotFound
from runners.errors import RunnerError

__all__ = ["Converger", "Desired"]

log = get_logger("rollout.converge")


@dataclass(frozen=True)
class Desired:
    """What one environment should look like: instances and traffic share per release."""

    app: str
    env: str
    replicas: Mapping[int, int]
    traffic: Mapping[int, int]
    keep_failed: frozenset[int] = frozenset()
    exclude_hosts: tuple[str, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, state: RolloutState, selector: Mapping[str, str]) -> Desired:
        if state.finished and state.target is not None:
            replicas = {state.target: state.replicas}
            traffic = {state.target: 100}
        else:
            replicas = {a.release: a.replicas for a in state.allocations if a.replicas > 0}
            traffic = state.traffic()
        # A running canary's failures are for the machine to see (it aborts); elsewhere
        # a failed instance is replaced.
        keep = (
            frozenset({state.canary})
            if state.canary is not None and not state.terminal
            else frozenset()
        )
        return cls(state.app, state.env, replicas, traffic, keep, state.lost_hosts, dict(selector))


SpecFor = Callable[[int], dict[str, Any]]
"""release -> the agent's instance spec for it."""


class Converger:
    """Starts and stops instances and sets the router so that an environment is as desired."""

    def __init__(self, hosts: HostDirectory, router: Router, *, drain: float = 0.2) -> None:
        self.hosts = hosts
        self.router = router
        self.drain = drain
        self._routes: dict[tuple[str, str], RouterEntry] = {}

    def converge(
        self,
        desired: Desired,
        instances: Sequence[ObservedInstance],
        snapshots: Mapping[str, HostSnapshot],
        spec_for: SpecFor,
        *,
        address: IPv4Address | None,
        port: int,
        target_port: int | None,
        memory: int = 0,
        stop: bool = True,
    ) -> None:
        """One pass; raises nothing for a single host's failure (the next pass retries).
        With ``stop=False`` instances that leave are only taken out of the router: the
        next pass stops them (a rollback answers as soon as the traffic has moved)."""
        capacities = [s.capacity() for s in snapshots.values()]
        starts: list[Instance] = []
        stops: list[ObservedInstance] = []
        for release, count in sorted(desired.replicas.items()):
            mine = [i for i in instances if i.release == release]
            failed = [i for i in mine if i.failed and release not in desired.keep_failed]
            stops += failed
            existing = [Instance(i.id, i.host, i.release) for i in mine if i not in failed]
            others = [Instance(i.id, i.host, i.release) for i in instances if i.release != release]
            try:
                plan = plan_instances(
                    desired.app,
                    desired.env,
                    release,
                    count,
                    capacities,
                    existing,
                    selector=desired.selector,
                    exclude_hosts=desired.exclude_hosts,
                    neighbours=others,
                    memory=memory,
                )
            except PlacementError as exc:
                log.warning("%s", exc)
                continue
            starts += plan.start
            stop_ids = {s.id for s in plan.stop}
            stops += [i for i in mine if i.id in stop_ids and i not in failed]
        stops += [i for i in instances if i.release not in desired.replicas]
        self._start(starts, spec_for)
        routed = self._route(desired, instances, stops, address, port, target_port)
        if not stop:
            return
        if stops and routed:
            # connections already accepted by a backend that leaves finish first
            time.sleep(self.drain)
        self._stop(stops)

    def forget(self, app: str, env: str) -> None:
        self._routes.pop((app, env), None)

    def _start(self, starts: Sequence[Instance], spec_for: SpecFor) -> None:
        specs = {release: spec_for(release) for release in {i.release for i in starts}}

        def start(instance: Instance) -> None:
            try:
                self.hosts.client(instance.host).put_instance(instance.id, specs[instance.release])
            except RunnerError as exc:
                log.warning("start %s on %s: %s", instance.id, instance.host, exc)

        self._each(start, starts)

    def _stop(self, stops: Sequence[ObservedInstance]) -> None:
        def stop(instance: ObservedInstance) -> None:
            try:
                self.hosts.client(instance.host).delete_instance(instance.id)
            except NotFound:
                pass
            except RunnerError as exc:
                log.warning("stop %s on %s: %s", instance.id, instance.host, exc)

        self._each(stop, stops)

    def _each(self, work: Callable[[Any], None], items: Sequence[Any]) -> None:
        if items:
            self.hosts.map(work, items)

    def _route(
        self,
        desired: Desired,
        instances: Sequence[ObservedInstance],
        stops: Sequence[ObservedInstance],
        address: IPv4Address | None,
        port: int,
        target_port: int | None,
    ) -> bool:
        """Apply the router entry when it changed; True when a leaving backend was routed."""
        if address is None or target_port is None:
            return False
        leaving = {i.id for i in stops}
        pools = []
        for release, weight in sorted(desired.traffic.items()):
            backends = tuple(
                Backend(i.address)
                for i in instances
                if i.release == release
                and i.healthy
                and i.address is not None
                and i.id not in leaving
            )
            if weight > 0 and not backends:
                return False  # keep the rules that serve until this release can
            pools.append(Pool(release, weight, backends))
        entry = RouterEntry(desired.app, desired.env, address, port, target_port, tuple(pools))
        key = (desired.app, desired.env)
        previous = self._routes.get(key)
        if previous == entry:
            return False
        try:
            self.router.apply(entry)
        except RolloutError as exc:
            log.warning("%s", exc)
            return False
        self._routes[key] = entry
        was_routed = {
            b.address for pool in (previous.pools if previous else ()) for b in pool.backends
        }
        return any(i.address in was_routed for i in stops) or previous is None
