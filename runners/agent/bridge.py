"""Instances on the host's bridge: :class:`InstanceNetwork` over :mod:`runners.network`.

Each instance gets a named network namespace, a veth pair into it with an address from
the host's IPAM file (``<data>/ipam.json``: a restarted agent never hands an address
out twice) and its published ports in the host's nftables map. The host's network is
read from ``<data>/host.json`` when ``berth cluster up`` wrote one; otherwise the agent
makes its own bridge from its options and writes that file.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import wait
from ipaddress import IPv4Address
from pathlib import Path

from runners import network as net
from runners.agent.errors import Conflict
from runners.agent.model import PortMapping
from runners.agent.networking import Attachment
from runners.errors import NetworkError
from runners.threads import spawn

DEFAULT_SUBNET = "10.88.0.0/24"
HOST_FILE = "host.json"


class BridgeNetwork:
    """Instances in their own namespaces, joined to the host's bridge."""

    kind = "bridge"

    def __init__(self, host: net.HostNetwork, ipam: net.Ipam) -> None:
        self.host = host
        self.ipam = ipam

    @classmethod
    def create(
        cls,
        data: Path,
        host_name: str,
        *,
        subnet: str | None = None,
        bridge: str | None = None,
        table: str | None = None,
    ) -> BridgeNetwork:
        """The host network of ``data/host.json``, or a new one from the options; set up."""
        data.mkdir(parents=True, exist_ok=True)
        path = data / HOST_FILE
        if path.exists() and subnet is None and bridge is None and table is None:
            host = net.load_host_network(path)
        else:
            host = net.HostNetwork(
                name=host_name,
                subnet=net.parse_subnet(subnet or DEFAULT_SUBNET),
                bridge=bridge or net.DEFAULT_BRIDGE,
                table=table or net.DEFAULT_TABLE,
                netns_prefix=f"berth-{host_name}",
            )
            net.write_host_network(path, host)
        net.setup_host_network(host)
        return cls(host, net.Ipam(data / "ipam.json", host.subnet))

    def _netns_name(self, instance_id: str) -> str:
        return net.container_netns_name(self.host.netns_prefix, instance_id)

    def _veth_key(self, instance_id: str) -> str:
        return f"{self.host.netns_prefix}/{instance_id}"

    def attach(self, instance_id: str, ports: Sequence[PortMapping]) -> Attachment:
        name = self._netns_name(instance_id)
        # the namespace is made on a thread while the address is allocated here
        made = spawn(lambda: net.create_container_netns(name), f"netns-attach:{name}")
        try:
            address = self.ipam.allocate(instance_id)
        except BaseException:
            wait([made])  # the clean-up must not race its creation
            if made.exception() is None:
                self._undo(instance_id, name, ())
            raise
        try:
            path = made.result()
        except BaseException:
            # a namespace that could not be made (or was there already) is not ours
            self.ipam.release(instance_id)
            raise
        return Attachment(netns=path, address=str(address), gateway=str(self.host.gateway.ip))

    def connect(
        self, instance_id: str, attachment: Attachment, ports: Sequence[PortMapping]
    ) -> None:
        if attachment.address is None:
            raise NetworkError(f"instance {instance_id}: no address reserved; attach it first")
        address = IPv4Address(attachment.address)
        net.attach_container(
            self._netns_name(instance_id),
            self.host.bridge,
            self.ipam.interface(address),
            self.host.gateway.ip,
            name=self._veth_key(instance_id),
            host_netns=self.host.netns,
        )
        for port in ports:
            try:
                net.publish_port(
                    "tcp" if port.protocol == "tcp" else "udp",
                    port.host,
                    address,
                    port.container,
                    netns=self.host.netns,
                    table=self.host.table,
                )
            except net.PortInUse as exc:
                raise Conflict(f"instance {instance_id}: {exc}") from exc

    def detach(self, instance_id: str) -> None:
        address = self.ipam.lookup(instance_id)
        ports = []
        if address is not None:
            for port in net.published_ports(netns=self.host.netns, table=self.host.table):
                if port.container_ip == address:
                    ports.append(PortMapping(port.host_port, port.container_port, port.protocol))
        self._undo(instance_id, self._netns_name(instance_id), ports)

    def attachment(self, instance_id: str) -> Attachment | None:
        address = self.ipam.lookup(instance_id)
        if address is None:
            return None
        path = net.netns_path(self._netns_name(instance_id))
        return Attachment(netns=path, address=str(address), gateway=str(self.host.gateway.ip))

    def _undo(self, instance_id: str, netns_name: str, ports: Sequence[PortMapping]) -> None:
        problems = []
        for port in ports:
            try:
                net.unpublish_port(
                    "tcp" if port.protocol == "tcp" else "udp",
                    port.host,
                    netns=self.host.netns,
                    table=self.host.table,
                )
            except NetworkError as exc:
                problems.append(str(exc))
        for action in (
            lambda: net.detach_container(self._veth_key(instance_id), host_netns=self.host.netns),
            lambda: net.remove_container_netns(netns_name),
            lambda: self.ipam.release(instance_id),
        ):
            try:
                action()
            except NetworkError as exc:
                problems.append(str(exc))
        if problems:
            raise NetworkError(
                f"instance {instance_id}: network not fully removed: {'; '.join(problems)}"
            )
