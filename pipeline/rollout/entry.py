"""Entry addresses: where clients reach (app, env), one address each.

On a simulated cluster every (app, env) gets an address of the cluster link, taken from
the top of the range down (host *i* sits at ``.10+i`` at the bottom, the bridge at
``.1``), added as a /32 to the cluster bridge in the root namespace. The router of that
entry (nftables, in the root namespace) sends its connections on to the instances; the
root namespace routes to every host's container subnet. Allocations are kept in a JSON
file, so an entry keeps its address across restarts, and the first free address is
taken in order, so the same sequence of environments always gets the same addresses.

For ``hosts:`` (real machines) the entry addresses must be given by whoever runs the
network (a configurable address per environment is planned); until then
:class:`EntryAddresses` is built with an explicit pool and no link to bind to.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from pipeline.rollout.errors import RolloutError
from runners.clusterstate import load_state
from runners.errors import RunnerError
from runners.net.links import add_address, remove_address

__all__ = ["ENTRY_PORT", "EntryAddresses"]

ENTRY_PORT = 80
"""Every entry listens on port 80 of its own address."""


class EntryAddresses:
    """Allocates, persists and binds the entry address of each (app, env)."""

    def __init__(
        self,
        path: Path,
        pool: IPv4Network,
        *,
        reserved: Iterable[IPv4Address] = (),
        link: str | None = None,
        netns: str | None = None,
    ) -> None:
        self.path = path
        self.pool = pool
        self.reserved = frozenset(reserved)
        self.link = link
        self.netns = netns
        self._lock = threading.Lock()

    @classmethod
    def for_cluster(cls, cluster_dir: Path, path: Path | None = None) -> EntryAddresses:
        """Entry addresses on the link of the simulated cluster kept in ``cluster_dir``."""
        state = load_state(cluster_dir)
        if state is None:
            raise RolloutError(
                f"{cluster_dir}: no simulated cluster there; start one with berth cluster up"
            )
        plan = state.plan
        reserved = [plan.gateway.ip, *(host.address.ip for host in plan.hosts)]
        return cls(
            path or cluster_dir / "entries.json", plan.link, reserved=reserved, link=plan.bridge
        )

    def known(self) -> dict[tuple[str, str], IPv4Address]:
        """Every allocated entry address."""
        with self._lock:
            return self._read()

    def address(self, app: str, env: str) -> IPv4Address:
        """The entry address of (app, env), allocated (and persisted) on first use."""
        with self._lock:
            table = self._read()
            found = table.get((app, env))
            if found is not None:
                return found
            used = set(table.values()) | self.reserved
            hosts = list(self.pool.hosts())
            for candidate in reversed(hosts):
                if candidate not in used:
                    table[(app, env)] = candidate
                    self._write(table)
                    return candidate
        raise RolloutError(
            f"{app}/{env}: no free entry address left in {self.pool}; "
            "use a larger cluster subnet (berth cluster up --subnet)"
        )

    def bind(self, address: IPv4Address) -> None:
        """Make ``address`` local on the link (nothing without a link)."""
        if self.link is None:
            return
        try:
            add_address(self.link, IPv4Interface(f"{address}/32"), netns=self.netns)
        except RunnerError as exc:
            raise RolloutError(f"entry address {address}: {exc}") from exc

    def unbind(self, address: IPv4Address) -> None:
        if self.link is None:
            return
        try:
            remove_address(self.link, IPv4Interface(f"{address}/32"), netns=self.netns)
        except RunnerError as exc:
            raise RolloutError(f"entry address {address}: {exc}") from exc

    def _read(self) -> dict[tuple[str, str], IPv4Address]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RolloutError(f"{self.path}: cannot read entry addresses: {exc}") from exc
        table: dict[tuple[str, str], IPv4Address] = {}
        for key, value in dict(doc.get("entries", {})).items():
            app, _, env = str(key).partition("/")
            table[(app, env)] = IPv4Address(value)
        return table

    def _write(self, table: dict[tuple[str, str], IPv4Address]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"entries": {f"{a}/{e}": str(addr) for (a, e), addr in sorted(table.items())}}
        fd, staged = tempfile.mkstemp(dir=self.path.parent, prefix=".entries-")
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, indent=1)
        os.replace(staged, self.path)
