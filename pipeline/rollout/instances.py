"""Instances as the agents see them, and as the engine asks for them (pure).

- :func:`instance_spec` is the agent's instance spec for one release in one environment:
  the image by digest, the environment's variables under the app's own for it, the
  port, health probe and resources of the app spec, and labels naming app, environment
  and release. The environment's secrets join the variables here, at start: the spec goes
  to the agent and nowhere else (never to the store, an event or a log).
- :func:`observed_instances` picks an environment's instances out of the agents'
  inventories (by those labels) and :func:`observation` sums them per release into the
  machine's :class:`~pipeline.rollout.model.Observation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address
from typing import Any

from pipeline.appspec import AppSpec
from pipeline.rollout.model import Observation, ReleaseHealth

__all__ = [
    "APP_LABEL",
    "ENV_LABEL",
    "RELEASE_LABEL",
    "ObservedInstance",
    "instance_spec",
    "observation",
    "observed_instances",
]

APP_LABEL = "berth.app"
ENV_LABEL = "berth.env"
RELEASE_LABEL = "berth.release"

_FAILED_STATES = frozenset({"exited", "restarting", "missing"})


@dataclass(frozen=True)
class ObservedInstance:
    """One instance of (app, env) in an agent's inventory."""

    id: str
    host: str
    release: int
    state: str
    health: str
    address: IPv4Address | None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def healthy(self) -> bool:
        # without a probe, an instance that runs is healthy
        return self.running and self.health in ("healthy", "none")

    @property
    def failed(self) -> bool:
        return self.state in _FAILED_STATES or self.health == "unhealthy"


def instance_spec(
    app: str,
    env: str,
    release: int,
    *,
    image: str,
    spec: AppSpec,
    variables: Mapping[str, str],
    secrets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The agent's spec for an instance of ``release`` (``image`` names it by digest);
    ``secrets`` (name -> revealed value) win over variables of the same name."""
    run = spec.run
    env_vars = {**dict(variables), **dict(run.variables.get(env, {})), **dict(secrets or {})}
    doc: dict[str, Any] = {
        "image": image,
        "env": dict(sorted(env_vars.items())),
        "labels": {APP_LABEL: app, ENV_LABEL: env, RELEASE_LABEL: str(release)},
        # a failed instance must stay failed where the engine can see it: the rollout,
        # not the agent, decides what replaces it
        "restart": {"policy": "no"},
    }
    if run.command is not None:
        doc["command"] = list(run.command)
    limits = run.resources
    resources = {
        "memory_bytes": limits.memory,
        "cpus": limits.cpu,
        "pids": limits.pids,
    }
    if any(value is not None for value in resources.values()):
        doc["resources"] = resources
    health = run.health
    if health is not None:
        probe: dict[str, Any] = {
            "kind": health.kind,
            "interval": health.interval.total_seconds(),
            "timeout": health.timeout.total_seconds(),
            "healthy_threshold": health.healthy_threshold,
            "unhealthy_threshold": health.unhealthy_threshold,
        }
        if health.start_period is not None:
            probe["start_period"] = health.start_period.total_seconds()
        if health.kind == "http":
            probe |= {"port": run.port, "path": health.http}
        elif health.kind == "tcp":
            probe["port"] = run.port
        else:
            probe["command"] = list(health.exec or ())
        doc["health"] = probe
    return doc


def observed_instances(
    app: str, env: str, inventories: Mapping[str, Iterable[Mapping[str, Any]]]
) -> list[ObservedInstance]:
    """The instances of (app, env) in ``inventories`` (host -> the agent's instance list)."""
    found: list[ObservedInstance] = []
    for host, listing in inventories.items():
        for item in listing:
            labels = item.get("labels") or {}
            if labels.get(APP_LABEL) != app or labels.get(ENV_LABEL) != env:
                continue
            release = str(labels.get(RELEASE_LABEL, ""))
            if not release.isdigit():
                continue
            address = item.get("address")
            found.append(
                ObservedInstance(
                    id=str(item["id"]),
                    host=host,
                    release=int(release),
                    state=str(item.get("state", "")),
                    health=str(item.get("health", "none")),
                    address=IPv4Address(address) if address else None,
                )
            )
    return sorted(found, key=lambda i: (i.release, i.id))


def observation(at: datetime, instances: Iterable[ObservedInstance]) -> Observation:
    """The machine's view: instances running, healthy and failed per release, at ``at``."""
    tally: dict[int, list[int]] = {}
    for instance in instances:
        counts = tally.setdefault(instance.release, [0, 0, 0])
        counts[0] += instance.running
        counts[1] += instance.healthy
        counts[2] += instance.failed
    return Observation(
        at,
        tuple(
            ReleaseHealth(release, running, healthy, failed)
            for release, (running, healthy, failed) in sorted(tally.items())
        ),
    )
