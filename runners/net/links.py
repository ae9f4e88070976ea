"""Links, addresses and routes over netlink (pyroute2), in any network namespace.

Every operation runs on a short-lived thread that has entered the target namespace
(:func:`netlink`): pyroute2 then needs no helper process, and callers running an
asyncio loop (the agent) are never blocked by pyroute2's own loop on their thread.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from runners.errors import NetworkError
from runners.net.names import (
    CONTAINER_IFNAME,
    host_veth_name,
    netns_path,
    validate_ifname,
)
from runners.net.nsthread import in_netns

T = TypeVar("T")
# the kernel numbers every namespace's loopback 1
LOOPBACK_INDEX = 1

# A bridge must not hand its traffic to the host's iptables (br_netfilter, loaded by
# Docker with FORWARD policy DROP): berth's traffic is filtered by its own nft table.
_BRIDGE_OPTIONS = {"br_nf_call_iptables": 0, "br_nf_call_ip6tables": 0, "br_nf_call_arptables": 0}


@dataclass(frozen=True)
class VethPair:
    """The two ends of a container's veth: ``host`` on the bridge, ``container`` inside."""

    host: str
    container: str


def netlink(netns: str | None, work: Callable[[Any], T]) -> T:
    """Run ``work(ipr)`` with an ``IPRoute`` socket inside ``netns`` (None: this one)."""
    target = None if netns is None else netns_path(netns)

    def run() -> T:
        with IPRoute() as ipr:
            return work(ipr)

    return in_netns(target, run)


@contextmanager
def _failing(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        raise NetworkError(f"{what}: {os.strerror(exc.code)} (netlink error {exc.code})") from exc
    except OSError as exc:
        raise NetworkError(f"{what}: {exc}") from exc


def _index(name: str) -> int | None:
    """The index of interface ``name`` in the calling thread's namespace, or None.

    :func:`netlink` makes its socket on the thread that runs the work, so this is the
    socket's namespace too. An ioctl costs microseconds; pyroute2's RTM_GETLINK parses a
    whole link message (every statistic and attribute) in Python, half a millisecond.
    """
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _where(netns: str | None) -> str:
    return f"in netns {netns}" if netns else "in this namespace"


def link_exists(name: str, *, netns: str | None = None) -> bool:
    """True when an interface called ``name`` exists in ``netns``."""
    with _failing(f"look up {name} {_where(netns)}"):
        return in_netns(
            None if netns is None else netns_path(netns), lambda: _index(name) is not None
        )


def link_names(*, netns: str | None = None) -> list[str]:
    """The names of every interface in ``netns``, sorted."""
    with _failing(f"list links {_where(netns)}"):
        return sorted(
            str(link.get("ifname")) for link in netlink(netns, lambda ipr: list(ipr.get_links()))
        )


def set_loopback_up(netns: str | None) -> None:
    """Bring ``lo`` up in ``netns`` (a new namespace starts with it down)."""

    def work(ipr: Any) -> None:
        ipr.link("set", index=_index("lo"), state="up")

    with _failing(f"set lo up {_where(netns)}"):
        netlink(netns, work)


def create_bridge(
    name: str, address: IPv4Interface | None = None, *, netns: str | None = None
) -> None:
    """Create bridge ``name`` (with ``address`` as the gateway of its subnet) and set it up."""
    validate_ifname(name)

    def work(ipr: Any) -> None:
        if _index(name) is not None:
            raise NetworkError(
                f"bridge {name} {_where(netns)}: already exists; delete it or pick another name"
            )
        ipr.link("add", ifname=name, kind="bridge", **_BRIDGE_OPTIONS)
        index = _index(name)
        try:
            if address is not None:
                ipr.addr(
                    "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
                )
            ipr.link("set", index=index, state="up")
        except BaseException:
            ipr.link("del", index=index)
            raise

    with _failing(f"create bridge {name} {_where(netns)}"):
        netlink(netns, work)


def delete_link(name: str, *, netns: str | None = None) -> bool:
    """Delete interface ``name`` (a veth takes its peer along); False if it was not there."""

    def work(ipr: Any) -> bool:
        index = _index(name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:  # deleted meanwhile, e.g. with its peer
                return False
            raise
        return True

    with _failing(f"delete {name} {_where(netns)}"):
        return netlink(netns, work)


def delete_bridge(name: str, *, netns: str | None = None) -> bool:
    """Delete bridge ``name`` (routes through it go with it); False if it was not there."""
    return delete_link(name, netns=netns)


def add_route(dst: IPv4Network, via: IPv4Address, *, netns: str | None = None) -> None:
    """Route ``dst`` through the gateway ``via`` in ``netns``."""

    def work(ipr: Any) -> None:
        ipr.route("add", dst=str(dst), gateway=str(via))

    with _failing(f"route {dst} via {via} {_where(netns)}"):
        netlink(netns, work)


def move_veth_end(
    name: str, peer: str, peer_final: str, peer_netns: str, *, netns: str | None = None
) -> None:
    """Create veth ``name``/``peer`` in ``netns`` and move ``peer`` into ``peer_netns``.

    Inside ``peer_netns`` the peer is renamed ``peer_final``. The pair is made under a
    temporary peer name so it cannot collide with an interface in ``netns``.
    """
    for each in (name, peer, peer_final):
        validate_ifname(each)
    target = netns_path(peer_netns)

    def create(ipr: Any) -> None:
        if _index(name) is not None:
            raise NetworkError(
                f"veth {name} {_where(netns)}: already exists; remove the container's network"
                " first (detach_container)"
            )
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=_index(peer), net_ns_fd=fd)
            finally:
                os.close(fd)
        except BaseException:
            ipr.link("del", index=_index(name))
            raise

    def rename(ipr: Any) -> None:
        ipr.link("set", index=_index(peer), ifname=peer_final)

    with _failing(f"create veth {name} into {peer_netns}"):
        netlink(netns, create)
    try:
        with _failing(f"rename {peer} to {peer_final} in {peer_netns}"):
            netlink(target, rename)
    except NetworkError:
        delete_link(name, netns=netns)
        raise


def configure_interface(
    name: str,
    address: IPv4Interface,
    *,
    netns: str | None = None,
    master: str | None = None,
    gateway: IPv4Address | None = None,
) -> None:
    """Give ``name`` its address, enslave it to ``master``, set it up, add a default route."""

    def work(ipr: Any) -> None:
        index = _index(name)
        if index is None:
            raise NetworkError(f"interface {name} {_where(netns)}: does not exist")
        ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        if master is not None:
            ipr.link("set", index=index, master=_index(master))
        ipr.link("set", index=index, state="up")
        if gateway is not None:
            ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))

    with _failing(f"configure {name} {_where(netns)}"):
        netlink(netns, work)


def enslave_up(name: str, master: str, *, netns: str | None = None) -> None:
    """Attach ``name`` to bridge ``master`` and set it up."""

    def work(ipr: Any) -> None:
        index, bridge = _index(name), _index(master)
        if index is None or bridge is None:
            raise NetworkError(f"enslave {name} to {master} {_where(netns)}: no such interface")
        ipr.link("set", index=index, master=bridge)
        ipr.link("set", index=index, state="up")

    with _failing(f"attach {name} to bridge {master} {_where(netns)}"):
        netlink(netns, work)


def attach_container(
    container_netns: str,
    bridge: str,
    address: IPv4Interface,
    gateway: IPv4Address,
    *,
    name: str,
    host_netns: str | None = None,
) -> VethPair:
    """Wire a container's namespace to the host bridge; return the veth's two names.

    ``name`` (the container id) determines the host end's name (``vb`` + hash). Inside
    the container the interface is ``eth0`` with ``address`` and a default route via
    ``gateway``; loopback is up. On failure nothing is left on the host.

    Two netlink sessions, one per namespace: the pair is made on the host with its peer
    created directly inside the container's namespace under its final name (a new
    namespace has no ``eth0`` to collide with), then the inside is configured.
    """
    host_end = validate_ifname(host_veth_name(name))
    target = netns_path(container_netns)

    def outside(ipr: Any) -> None:
        master = _index(bridge)
        if master is None:
            raise NetworkError(f"bridge {bridge} {_where(host_netns)}: does not exist")
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # one request: the pair, its peer moved into the namespace, on the bridge, up
            ipr.link(
                "add",
                ifname=host_end,
                kind="veth",
                peer={"ifname": CONTAINER_IFNAME, "net_ns_fd": fd},
                master=master,
                state="up",
            )
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise NetworkError(
                    f"veth {host_end} {_where(host_netns)}: already exists; remove the"
                    " container's network first (detach_container)"
                ) from exc
            raise
        finally:
            os.close(fd)

    def inside(ipr: Any) -> None:
        ipr.link("set", index=LOOPBACK_INDEX, state="up")
        index = _index(CONTAINER_IFNAME)
        if index is None:
            raise NetworkError(f"interface {CONTAINER_IFNAME} in {container_netns}: missing")
        ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))

    with _failing(f"create veth {host_end} into {container_netns} {_where(host_netns)}"):
        netlink(host_netns, outside)
    try:
        with _failing(f"configure {CONTAINER_IFNAME} in {container_netns}"):
            netlink(target, inside)
    except NetworkError:
        delete_link(host_end, netns=host_netns)
        raise
    return VethPair(host=host_end, container=CONTAINER_IFNAME)


def detach_container(name: str, *, host_netns: str | None = None) -> bool:
    """Remove a container's veth pair (by container id); False if it was already gone."""
    return delete_link(host_veth_name(name), netns=host_netns)


def networks_in_use(*, netns: str | None = None) -> list[IPv4Network]:
    """Every IPv4 network routed or assigned in ``netns`` except the default route."""

    def work(ipr: Any) -> list[IPv4Network]:
        found: list[IPv4Network] = []
        for route in ipr.get_routes(family=2, table=254):
            dst, length = route.get("dst"), route.get("dst_len", 0)
            if dst and length:
                found.append(IPv4Network(f"{dst}/{length}", strict=False))
        for addr in ipr.get_addr(family=2):
            local = addr.get("local") or addr.get("address")
            if local and not IPv4Address(local).is_loopback:
                found.append(IPv4Network(f"{local}/{addr['prefixlen']}", strict=False))
        return found

    with _failing(f"list routes {_where(netns)}"):
        networks = netlink(netns, work)
    return sorted(set(networks), key=lambda n: (int(n.network_address), n.prefixlen))


__all__ = [
    "VethPair",
    "add_route",
    "attach_container",
    "configure_interface",
    "create_bridge",
    "delete_bridge",
    "delete_link",
    "detach_container",
    "enslave_up",
    "link_exists",
    "link_names",
    "move_veth_end",
    "netlink",
    "networks_in_use",
    "set_loopback_up",
]


def add_address(name: str, address: IPv4Interface, *, netns: str | None = None) -> None:
    """Give ``name`` one more address; nothing when it already has it."""

    def work(ipr: Any) -> None:
        index = _index(name)
        if index is None:
            raise NetworkError(f"interface {name} {_where(netns)}: does not exist")
        try:
            ipr.addr(
                "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    with _failing(f"add address {address} to {name} {_where(netns)}"):
        netlink(netns, work)


def remove_address(name: str, address: IPv4Interface, *, netns: str | None = None) -> bool:
    """Take ``address`` off ``name``; False when the link or the address is not there."""

    def work(ipr: Any) -> bool:
        index = _index(name)
        if index is None:
            return False
        try:
            ipr.addr(
                "del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    with _failing(f"remove address {address} from {name} {_where(netns)}"):
        return netlink(netns, work)
