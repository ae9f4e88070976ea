"""Publishing container ports on a host (effects; the rule text is in ``nftables``).

A port is taken when the host's map already publishes it or when a socket on the host
listens on it; either way :class:`PortInUse` says which and what to do. The final
``create element`` is atomic in the kernel, so two concurrent publishers of one port
cannot both win.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address, IPv4Network

from runners.errors import NetworkError, SubprocessError
from runners.net.errors import PortInUse
from runners.net.names import netns_path
from runners.net.nftables import (
    DEFAULT_TABLE,
    MAP_NAME,
    Protocol,
    PublishedPort,
    add_element_script,
    delete_element_script,
    delete_table_script,
    list_nft,
    parse_published,
    render_nft_ruleset,
    run_nft,
)
from runners.net.nsthread import in_netns


def _where(netns: str | None) -> str:
    return f"in netns {netns}" if netns else "on this host"


def published_ports(*, netns: str | None = None, table: str = DEFAULT_TABLE) -> list[PublishedPort]:
    """The ports the host's table publishes (empty when the table is not installed)."""
    listing = list_nft(["map", "inet", table, MAP_NAME], netns=netns)
    return [] if listing is None else parse_published(listing)


def install_host_table(
    subnet: IPv4Network, *, netns: str | None = None, table: str = DEFAULT_TABLE
) -> None:
    """Install (or refresh) the host's table, keeping the ports it already publishes."""
    current = published_ports(netns=netns, table=table)
    run_nft(render_nft_ruleset(subnet, current, table=table), netns=netns)


def remove_host_table(*, netns: str | None = None, table: str = DEFAULT_TABLE) -> None:
    """Delete the host's table and with it every published port (no error if absent)."""
    run_nft(delete_table_script(table), netns=netns)


def port_listening(protocol: Protocol, port: int, *, netns: str | None = None) -> bool:
    """True when a socket in ``netns`` already holds ``protocol`` port ``port``."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM

    def probe() -> bool:
        with socket.socket(socket.AF_INET, kind) as sock:
            if protocol == "tcp":
                # ignore connections in TIME_WAIT; a listener still makes bind fail
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))  # noqa: S104 - a probe, never listens
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                raise
            return False

    return in_netns(None if netns is None else netns_path(netns), probe)


def publish_port(
    protocol: Protocol,
    host_port: int,
    container_ip: IPv4Address,
    container_port: int,
    *,
    netns: str | None = None,
    table: str = DEFAULT_TABLE,
) -> PublishedPort:
    """Send connections to the host's ``host_port`` to ``container_ip:container_port``.

    The host table must be installed (:func:`install_host_table`).
    """
    port = PublishedPort(protocol, host_port, container_ip, container_port)
    if port_listening(protocol, host_port, netns=netns):
        raise PortInUse(
            f"{protocol} port {host_port} {_where(netns)}: a process on the host listens on"
            " it; stop that process or pick another host port"
        )
    # no listing first: the kernel refuses a second element with the same key, and the
    # one nft process per start is what publishing costs
    try:
        run_nft(add_element_script(port, table=table), netns=netns)
    except SubprocessError as exc:
        if "File exists" in exc.stderr_tail:
            raise PortInUse(_taken_message(port, netns, table)) from exc
        if "No such file or directory" in exc.stderr_tail:
            raise NetworkError(
                f"publish {protocol} port {host_port} {_where(netns)}: table inet {table} is"
                " not installed; call install_host_table first"
            ) from exc
        raise
    return port


def _taken_message(port: PublishedPort, netns: str | None, table: str) -> str:
    where = f"{port.protocol} port {port.host_port} {_where(netns)}"
    for existing in published_ports(netns=netns, table=table):
        if existing.key == port.key:
            return (
                f"{where}: already published to {existing.container_ip}:"
                f"{existing.container_port}; unpublish it or pick another host port"
            )
    return f"{where}: was published by someone else just now; pick another host port"


def unpublish_port(
    protocol: Protocol,
    host_port: int,
    *,
    netns: str | None = None,
    table: str = DEFAULT_TABLE,
) -> bool:
    """Stop publishing ``host_port``; False if it was not published."""
    for existing in published_ports(netns=netns, table=table):
        if existing.key == f"{protocol} . {host_port}":
            try:
                run_nft(delete_element_script(existing, table=table), netns=netns)
            except SubprocessError as exc:
                if "No such file or directory" in exc.stderr_tail:
                    return False  # unpublished concurrently
                raise
            return True
    return False
