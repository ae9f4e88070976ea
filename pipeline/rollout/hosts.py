"""The container hosts the engine drives: one agent client each, and their heartbeats.

:class:`HostDirectory` reads its hosts from the simulated cluster's ``hosts.json``
(:meth:`HostDirectory.from_hosts_file`) or from the service config's ``hosts:``
(:meth:`HostDirectory.from_settings`, with the agents' tokens resolved by the caller).
:meth:`HostDirectory.poll` asks every agent for its info (the heartbeat) and its
inventory in parallel; a host that misses ``lost_after`` polls in a row is *lost*, and
stays lost until it answers again. A changed ``boot_id`` means its agent restarted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.rollout.errors import RolloutError
from pipeline.rollout.placement import HostCapacity
from pipeline.settings import Host as HostSetting
from runners.agent.client import AgentClient
from runners.errors import RunnerError

__all__ = ["HostDirectory", "HostEntry", "HostSnapshot"]

T = TypeVar("T")
Item = TypeVar("Item")


@dataclass(frozen=True)
class HostEntry:
    """How to reach one host's agent."""

    name: str
    address: str
    token: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class HostSnapshot:
    """One host as the last poll saw it; ``instances`` is None when it did not answer."""

    name: str
    labels: Mapping[str, str]
    alive: bool
    lost: bool
    free_memory: int = 0
    boot_id: str = ""
    instances: tuple[Mapping[str, Any], ...] | None = None
    error: str = ""

    def capacity(self) -> HostCapacity:
        return HostCapacity(self.name, dict(self.labels), self.free_memory, alive=self.alive)


@dataclass
class _Heartbeat:
    misses: int = 0
    boot_id: str = ""
    free_memory: int = 0


class HostDirectory:
    """Every host of the installation, with an :class:`AgentClient` and heartbeat tracking.

    Safe to share between threads; close it to close the clients."""

    def __init__(
        self,
        hosts: Iterable[HostEntry],
        *,
        lost_after: int = 3,
        timeout: float = 60.0,
        heartbeat_timeout: float = 2.0,
        client_factory: Callable[[HostEntry, float], AgentClient] | None = None,
    ) -> None:
        self.entries = {entry.name: entry for entry in hosts}
        if not self.entries:
            raise RolloutError("no container hosts configured: add hosts: or cluster: to berth.yml")
        self.lost_after = lost_after
        make = client_factory or _client
        self._clients = {name: make(entry, timeout) for name, entry in self.entries.items()}
        self._beats = {name: make(entry, heartbeat_timeout) for name, entry in self.entries.items()}
        self._state = {name: _Heartbeat() for name in self.entries}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=min(16, 2 * len(self.entries)))

    @classmethod
    def from_hosts_file(cls, path: Path, **options: Any) -> HostDirectory:
        """The hosts listed in a simulated cluster's ``hosts.json`` (``berth cluster up``)."""
        try:
            listing = json.loads(path.read_text())
            hosts = [
                HostEntry(
                    name=str(item["name"]),
                    address=f"unix:{item['unix_socket']}",
                    labels={str(k): str(v) for k, v in dict(item.get("labels", {})).items()},
                )
                for item in listing["hosts"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RolloutError(
                f"{path}: not a host list berth can read ({exc}); run berth cluster up again"
            ) from exc
        return cls(hosts, **options)

    @classmethod
    def from_settings(
        cls, hosts: Sequence[HostSetting], tokens: Mapping[str, str], **options: Any
    ) -> HostDirectory:
        """The config's ``hosts:``; ``tokens`` maps a host name to its resolved agent token."""
        entries = []
        for host in hosts:
            address = host.address
            if not host.is_unix and not address.startswith(("http://", "https://")):
                address = f"http://{address}"
            entries.append(HostEntry(host.name, address, tokens.get(host.name), host.labels))
        return cls(entries, **options)

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def client(self, host: str) -> AgentClient:
        try:
            return self._clients[host]
        except KeyError:
            raise RolloutError(f"unknown host {host!r}: it is not in the host list") from None

    def poll(self) -> dict[str, HostSnapshot]:
        """Heartbeat and inventory of every host, asked in parallel."""
        answers = self.map(self._ask, self.names)
        snapshots: dict[str, HostSnapshot] = {}
        with self._lock:
            for name, (info, instances, error) in zip(self.names, answers, strict=True):
                beat = self._state[name]
                if info is None or instances is None:
                    beat.misses += 1
                else:
                    beat.misses = 0
                    beat.boot_id = str(info.get("boot_id", ""))
                    beat.free_memory = int(dict(info.get("memory", {})).get("free", 0))
                entry = self.entries[name]
                snapshots[name] = HostSnapshot(
                    name=name,
                    labels=entry.labels,
                    alive=beat.misses == 0,
                    lost=beat.misses >= self.lost_after,
                    free_memory=beat.free_memory,
                    boot_id=beat.boot_id,
                    instances=None if instances is None else tuple(instances),
                    error=error,
                )
        return snapshots

    def map(self, work: Callable[[Item], T], items: Iterable[Item]) -> list[T]:
        """``work(item)`` for each item on the directory's threads, results in order."""
        return list(self._pool.map(work, list(items)))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for client in (*self._clients.values(), *self._beats.values()):
            client.close()

    def _ask(self, name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]] | None, str]:
        client = self._beats[name]
        try:
            return client.info(), client.instances(), ""
        except RunnerError as exc:
            return None, None, str(exc)


def _client(entry: HostEntry, timeout: float) -> AgentClient:
    return AgentClient(entry.address, token=entry.token, timeout=timeout)
