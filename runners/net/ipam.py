"""IP address management for a host's container subnet.

:class:`IpamState` is the pure core: who holds which address, and where the next search
starts. :class:`Ipam` keeps it in a JSON file in the host's data directory, changed
under an exclusive ``flock`` and replaced atomically, so concurrent allocations (threads
or processes) get distinct addresses and an agent restart sees every allocation made
before it.

Addresses are handed out round-robin after the last one allocated: an address that was
just released is the last to come back, so a stale ARP or conntrack entry for a removed
container does not hit its successor.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from types import MappingProxyType

from runners.errors import NetworkError
from runners.net.errors import AddressesExhausted, InvalidNetworkInput

FORMAT_VERSION = 1


def parse_subnet(text: str, *, what: str = "subnet", max_prefix: int = 30) -> IPv4Network:
    """Parse an IPv4 CIDR such as ``10.241.1.0/24``; raise a clear error if it is not one."""
    try:
        network = IPv4Network(text, strict=True)
    except ValueError as exc:
        raise InvalidNetworkInput(
            f"{what} {text!r}: not an IPv4 network in CIDR form ({exc}); e.g. 10.241.1.0/24"
        ) from exc
    if "/" not in text:
        raise InvalidNetworkInput(f"{what} {text!r}: give a prefix length, e.g. {text}/24")
    if network.prefixlen > max_prefix:
        raise InvalidNetworkInput(
            f"{what} {text}: /{network.prefixlen} is too small; use /{max_prefix} or larger"
        )
    return network


@dataclass(frozen=True)
class IpamState:
    """Allocations of one subnet: owner -> address, and the last address handed out.

    The first usable address is the gateway (the bridge's own address) and is never
    allocated.
    """

    subnet: IPv4Network
    allocations: Mapping[str, IPv4Address] = field(default_factory=dict)
    last: IPv4Address | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allocations", MappingProxyType(dict(self.allocations)))

    @property
    def gateway(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def capacity(self) -> int:
        """How many container addresses the subnet holds (network, gateway, broadcast excluded)."""
        return max(self.subnet.num_addresses - 3, 0)

    def _candidates(self) -> Iterator[IPv4Address]:
        first = int(self.gateway) + 1
        last = int(self.subnet.broadcast_address) - 1
        if last < first:
            return
        start = first if self.last is None else int(self.last) + 1
        if not first <= start <= last:
            start = first
        for value in range(start, last + 1):
            yield IPv4Address(value)
        for value in range(first, start):
            yield IPv4Address(value)

    def allocate(self, owner: str) -> tuple[IpamState, IPv4Address]:
        """The state with ``owner`` holding an address, and that address.

        Allocating again for the same owner returns the address it already holds.
        """
        if not owner:
            raise ValueError("an IPAM owner must be a non-empty string")
        if owner in self.allocations:
            return self, self.allocations[owner]
        taken = set(self.allocations.values())
        for candidate in self._candidates():
            if candidate not in taken:
                allocations = {**self.allocations, owner: candidate}
                return replace(self, allocations=allocations, last=candidate), candidate
        raise AddressesExhausted(
            f"subnet {self.subnet}: all {self.capacity} container addresses are allocated;"
            f" remove a container or give the host a larger subnet"
        )

    def release(self, owner: str) -> tuple[IpamState, IPv4Address | None]:
        """The state without ``owner``'s address, and the address it held (None if none)."""
        if owner not in self.allocations:
            return self, None
        allocations = {k: v for k, v in self.allocations.items() if k != owner}
        return replace(self, allocations=allocations), self.allocations[owner]

    def to_json(self) -> dict[str, object]:
        return {
            "version": FORMAT_VERSION,
            "subnet": str(self.subnet),
            "last": None if self.last is None else str(self.last),
            "allocations": {k: str(v) for k, v in sorted(self.allocations.items())},
        }

    @classmethod
    def from_json(cls, data: object, *, where: str) -> IpamState:
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise NetworkError(f"{where}: not a berth IPAM file (version {FORMAT_VERSION})")
        try:
            subnet = IPv4Network(str(data["subnet"]))
            last = None if data.get("last") is None else IPv4Address(str(data["last"]))
            raw = data.get("allocations", {})
            if not isinstance(raw, dict):
                raise TypeError("allocations must be an object")
            allocations = {str(k): IPv4Address(str(v)) for k, v in raw.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise NetworkError(f"{where}: corrupt IPAM file ({exc}); fix or remove it") from exc
        return cls(subnet=subnet, allocations=allocations, last=last)


class Ipam:
    """File-backed, process-safe address allocation for one subnet.

    ``Ipam(data_dir / "ipam.json", "10.241.1.0/24")``; every call reads the file under
    a lock, so several ``Ipam`` objects (threads, processes, a restarted agent) on the
    same file never hand out one address twice.
    """

    def __init__(self, path: Path, subnet: IPv4Network | str) -> None:
        self.path = path
        self.subnet = subnet if isinstance(subnet, IPv4Network) else parse_subnet(subnet)
        if self.subnet.num_addresses < 4:
            raise InvalidNetworkInput(f"subnet {self.subnet}: too small for containers")
        self._lock_path = path.with_name(path.name + ".lock")

    @property
    def gateway(self) -> IPv4Address:
        return self.subnet.network_address + 1

    def interface(self, address: IPv4Address) -> IPv4Interface:
        """``address`` with the subnet's prefix length, as a container's interface needs."""
        return IPv4Interface(f"{address}/{self.subnet.prefixlen}")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self) -> IpamState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return IpamState(self.subnet)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NetworkError(f"{self.path}: corrupt IPAM file ({exc}); fix or remove it") from exc
        state = IpamState.from_json(data, where=str(self.path))
        if state.subnet != self.subnet:
            raise NetworkError(
                f"{self.path}: allocations are for subnet {state.subnet}, not {self.subnet};"
                " a host's subnet cannot change while it has containers"
            )
        return state

    def _write(self, state: IpamState) -> None:
        # replaced whole, never rewritten in place; not synced to the disk (a millisecond
        # per start here): a process killed at any point leaves the old or the new file,
        # and what only a power cut could lose were addresses of containers gone with it
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(temp, "w") as handle:
            json.dump(state.to_json(), handle, sort_keys=True)
        os.replace(temp, self.path)

    def allocate(self, owner: str) -> IPv4Address:
        """An address for ``owner`` (the one it already holds, if any)."""
        with self._locked():
            state, address = self._read().allocate(owner)
            self._write(state)
            return address

    def release(self, owner: str) -> IPv4Address | None:
        """Free ``owner``'s address; return it (None if the owner held none)."""
        with self._locked():
            state, address = self._read().release(owner)
            if address is not None:
                self._write(state)
            return address

    def lookup(self, owner: str) -> IPv4Address | None:
        """The address ``owner`` holds, or None."""
        with self._locked():
            return self._read().allocations.get(owner)

    def allocations(self) -> dict[str, IPv4Address]:
        """Every owner and its address."""
        with self._locked():
            return dict(self._read().allocations)
