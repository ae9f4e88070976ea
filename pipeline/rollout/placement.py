"""Which host runs which instance (pure).

- :func:`plan_instances` turns "``count`` instances of release R" into instances to start
  and to stop: it keeps what already runs on live, eligible hosts; spreads new ones one
  per host before two on any (anti-affinity), then by most free memory; and replaces
  instances on hosts that stopped answering.
- :func:`eligible_hosts` honours an environment's host selector (labels).
- :func:`start_order` orders apps by ``depends_on`` (dependencies first).

Instance ids are stable names, ``APP-ENV-rRELEASE-SLOT``: the agent API is idempotent by
id, so asking twice for the same instance never starts two containers.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.rollout.errors import PlacementError

__all__ = [
    "HostCapacity",
    "Instance",
    "PlacementPlan",
    "eligible_hosts",
    "instance_id",
    "parse_instance_id",
    "plan_instances",
    "start_order",
]

_ID_PART = re.compile(r"[^a-z0-9]+")
_ID = re.compile(r"^(?P<prefix>.+)-r(?P<release>\d+)-(?P<slot>\d+)$")


@dataclass(frozen=True)
class HostCapacity:
    """A host as placement sees it: its labels, free memory, and whether it answers."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    free_memory: int = 0
    alive: bool = True


@dataclass(frozen=True, order=True)
class Instance:
    """Instance ``id`` of ``release`` on ``host``."""

    id: str
    host: str
    release: int


@dataclass(frozen=True)
class PlacementPlan:
    """Instances to start and to stop so that the wanted count runs."""

    start: tuple[Instance, ...] = ()
    stop: tuple[Instance, ...] = ()
    keep: tuple[Instance, ...] = ()


def instance_id(app: str, env: str, release: int, slot: int) -> str:
    """The id of instance ``slot`` of ``release``: a hostname label of at most 63 chars."""
    prefix = _ID_PART.sub("-", f"{app}-{env}".lower()).strip("-")
    suffix = f"-r{release}-{slot}"
    if len(prefix) + len(suffix) > 63:
        digest = hashlib.sha256(prefix.encode()).hexdigest()[:8]
        prefix = f"{prefix[: 63 - len(suffix) - 9].rstrip('-')}-{digest}"
    return prefix + suffix


def parse_instance_id(app: str, env: str, value: str) -> tuple[int, int] | None:
    """(release, slot) when ``value`` names an instance of ``app`` in ``env``, else None."""
    match = _ID.match(value)
    if match is None:
        return None
    release, slot = int(match["release"]), int(match["slot"])
    return (release, slot) if instance_id(app, env, release, slot) == value else None


def eligible_hosts(
    hosts: Iterable[HostCapacity], selector: Mapping[str, str]
) -> list[HostCapacity]:
    """The hosts carrying every label of ``selector`` (all hosts for an empty selector)."""
    return [h for h in hosts if all(h.labels.get(k) == v for k, v in selector.items())]


def plan_instances(
    app: str,
    env: str,
    release: int,
    count: int,
    hosts: Sequence[HostCapacity],
    existing: Sequence[Instance],
    *,
    selector: Mapping[str, str] | None = None,
    exclude_hosts: Iterable[str] = (),
    neighbours: Sequence[Instance] = (),
    memory: int = 0,
) -> PlacementPlan:
    """Start and stop instances of ``release`` so that ``count`` run on usable hosts.

    ``existing`` are this release's instances as observed; ``neighbours`` are the
    environment's other instances (other releases), which count for spreading. A host
    is usable when it is alive, matches ``selector``, is not excluded and, when
    ``memory`` is given, has that much free memory per new instance."""
    excluded = set(exclude_hosts)
    usable = {
        h.name: h
        for h in eligible_hosts(hosts, selector or {})
        if h.alive and h.name not in excluded
    }
    mine = [i for i in existing if i.release == release]
    healthy_homes = sorted(i for i in mine if i.host in usable)
    lost = sorted(i for i in mine if i.host not in usable)
    keep = list(healthy_homes)
    surplus: list[Instance] = []
    if len(keep) > count:
        # Surplus goes from the most crowded host first, newest slot first.
        by_host = Counter(i.host for i in keep)
        ranked = sorted(keep, key=lambda i: (-by_host[i.host], -_slot(i), i.id))
        surplus = ranked[: len(keep) - count]
        keep = [i for i in keep if i not in surplus]
    missing = count - len(keep)
    if missing > 0 and not usable:
        known = ", ".join(sorted(h.name for h in hosts)) or "none"
        raise PlacementError(
            f"{app}/{env}: no host can run release {release}: none is alive, matches the "
            f"selector {dict(selector or {})} and is not excluded (hosts: {known}); "
            "start an agent on a matching host or change host_selector"
        )
    load = Counter(i.host for i in keep)
    everyone = Counter(i.host for i in neighbours if i.release != release)
    free = {name: host.free_memory for name, host in usable.items()}
    used_slots = {_slot(i) for i in mine}
    started: list[Instance] = []
    slot = 0
    for _ in range(max(missing, 0)):
        candidates = [n for n in usable if memory <= 0 or free[n] >= memory]
        if not candidates:
            raise PlacementError(
                f"{app}/{env}: no host has {memory} bytes of memory free for another "
                f"instance of release {release}; free hosts or lower resources/memory"
            )
        host = min(candidates, key=lambda n: (load[n], load[n] + everyone[n], -free[n], n))
        while slot in used_slots:
            slot += 1
        used_slots.add(slot)
        started.append(Instance(instance_id(app, env, release, slot), host, release))
        load[host] += 1
        free[host] -= max(memory, 0)
    return PlacementPlan(start=tuple(started), stop=tuple(surplus + lost), keep=tuple(keep))


def _slot(instance: Instance) -> int:
    match = _ID.match(instance.id)
    return int(match["slot"]) if match else 0


def start_order(depends_on: Mapping[str, Sequence[str]]) -> list[str]:
    """Apps ordered so that each comes after the apps it depends on (ties by name).

    A dependency that is not itself a key is taken to run already. A cycle raises
    :class:`PlacementError` naming it."""
    remaining = {app: {d for d in deps if d in depends_on} for app, deps in depends_on.items()}
    order: list[str] = []
    while remaining:
        ready = sorted(app for app, deps in remaining.items() if not deps)
        if not ready:
            raise PlacementError(
                f"depends_on has a cycle: {_cycle(remaining)}; remove one of these dependencies"
            )
        for app in ready:
            order.append(app)
            del remaining[app]
        for deps in remaining.values():
            deps.difference_update(ready)
    return order


def _cycle(graph: Mapping[str, set[str]]) -> str:
    app = min(graph)
    path: list[str] = []
    while app not in path:
        path.append(app)
        app = min(graph[app])
    loop = path[path.index(app) :]
    return " -> ".join([*loop, app])
