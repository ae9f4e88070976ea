"""One host's network: its bridge, container subnet and nftables table.

:class:`HostNetwork` is what an agent needs to wire containers. ``berth cluster up``
writes it to ``host.json`` in each simulated host's data directory; an agent on a real
machine builds it from its own settings. :func:`setup_host_network` and
:func:`teardown_host_network` are idempotent, so an agent may call the first on every
start without disturbing running containers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from runners.errors import NetworkError
from runners.net.links import create_bridge, delete_bridge, link_exists
from runners.net.names import validate_ifname, validate_netns_name
from runners.net.nftables import DEFAULT_TABLE, validate_table_name
from runners.net.nsthread import set_interface_sysctl, set_sysctl
from runners.net.ports import install_host_table, remove_host_table

DEFAULT_BRIDGE = "berth0"


@dataclass(frozen=True)
class HostNetwork:
    """A host's container network.

    ``netns`` is the host's own namespace when it is simulated (None: the namespace the
    agent runs in); ``netns_prefix`` starts the names of its containers' namespaces.
    """

    name: str
    subnet: IPv4Network
    address: IPv4Address | None = None
    bridge: str = DEFAULT_BRIDGE
    table: str = DEFAULT_TABLE
    netns: str | None = None
    netns_prefix: str = "berth"

    def __post_init__(self) -> None:
        validate_ifname(self.bridge)
        validate_table_name(self.table)
        validate_netns_name(self.netns_prefix)
        if self.netns is not None:
            validate_netns_name(self.netns)

    @property
    def gateway(self) -> IPv4Interface:
        """The bridge's address: first address of the subnet, the containers' gateway."""
        return IPv4Interface(f"{self.subnet.network_address + 1}/{self.subnet.prefixlen}")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "subnet": str(self.subnet),
            "address": None if self.address is None else str(self.address),
            "bridge": self.bridge,
            "table": self.table,
            "netns": self.netns,
            "netns_prefix": self.netns_prefix,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HostNetwork:
        address = data.get("address")
        netns = data.get("netns")
        return cls(
            name=str(data["name"]),
            subnet=IPv4Network(str(data["subnet"])),
            address=None if address is None else IPv4Address(str(address)),
            bridge=str(data.get("bridge", DEFAULT_BRIDGE)),
            table=str(data.get("table", DEFAULT_TABLE)),
            netns=None if netns is None else str(netns),
            netns_prefix=str(data.get("netns_prefix", "berth")),
        )


def write_host_network(path: Path, host: HostNetwork) -> None:
    """Write ``host`` as JSON to ``path`` atomically."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(host.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(temp, path)


def load_host_network(path: Path) -> HostNetwork:
    """Read a host's network from the ``host.json`` written by :func:`write_host_network`."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError("expected a JSON object")
        return HostNetwork.from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NetworkError(f"{path}: cannot read the host network ({exc})") from exc


def setup_host_network(host: HostNetwork) -> None:
    """Create the bridge (if missing), enable forwarding and install the nft table.

    ``route_localnet`` on the bridge lets a connection from the host's own loopback to a
    published port (``curl 127.0.0.1:8080``) be sent on to its container; the table
    masquerades those and drops any other packet for 127.0.0.0/8 that arrives from
    outside the loopback, which that setting would otherwise let in.
    """
    if not link_exists(host.bridge, netns=host.netns):
        create_bridge(host.bridge, host.gateway, netns=host.netns)
    set_sysctl(host.netns, "net.ipv4.ip_forward", "1")
    set_interface_sysctl(host.netns, host.bridge, "route_localnet", "1")
    install_host_table(host.subnet, netns=host.netns, table=host.table)


def teardown_host_network(host: HostNetwork) -> None:
    """Remove the table and the bridge (containers must have been detached first)."""
    remove_host_table(netns=host.netns, table=host.table)
    delete_bridge(host.bridge, netns=host.netns)
