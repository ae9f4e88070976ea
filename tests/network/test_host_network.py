"""One host (a network namespace made by the test) with containers on its bridge."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from runners.errors import NetworkError
from runners.net.names import netns_path
from runners.net.nsthread import in_netns
from runners.network import (
    HostNetwork,
    Ipam,
    PortInUse,
    attach_container,
    container_netns_name,
    create_container_netns,
    create_netns,
    detach_container,
    host_veth_name,
    link_names,
    publish_port,
    published_ports,
    remove_container_netns,
    remove_netns,
    setup_host_network,
    teardown_host_network,
    unpublish_port,
)
from tests.network.support import (
    ANY_ADDRESS,
    fetch_from,
    leftovers,
    respond_in,
    send_raw_udp,
    unique,
)

pytestmark = pytest.mark.privileged


@dataclass
class Host:
    network: HostNetwork
    ipam: Ipam
    containers: list[str]

    @property
    def netns(self) -> str:
        assert self.network.netns is not None
        return self.network.netns

    def add(self, container: str) -> tuple[str, str]:
        """Create and wire a container netns; return (netns name, address)."""
        name = container_netns_name(self.network.netns_prefix, container)
        path = create_container_netns(name)
        self.containers.append(container)
        address = self.ipam.allocate(container)
        attach_container(
            path,
            self.network.bridge,
            self.ipam.interface(address),
            self.ipam.gateway,
            name=container,
            host_netns=self.netns,
        )
        return name, str(address)

    def remove(self, container: str) -> None:
        detach_container(container, host_netns=self.netns)
        remove_container_netns(container_netns_name(self.network.netns_prefix, container))
        self.ipam.release(container)
        self.containers.remove(container)


@pytest.fixture
def host(tmp_path: Path, no_leaks: None) -> Iterator[Host]:
    name = unique("bth")
    network = HostNetwork(
        name=name, subnet=IPv4Network("10.250.1.0/24"), netns=name, netns_prefix=name
    )
    create_netns(name)
    the_host = Host(network, Ipam(tmp_path / "ipam.json", network.subnet), [])
    try:
        setup_host_network(network)
        yield the_host
    finally:
        for container in list(the_host.containers):
            the_host.remove(container)
        teardown_host_network(network)
        remove_netns(name)
    assert leftovers(name) == []


def test_two_containers_on_one_bridge_reach_each_other(host: Host) -> None:
    ns_a, ip_a = host.add("a")
    ns_b, ip_b = host.add("b")
    assert ip_a != ip_b
    assert link_names(netns=ns_a) == ["eth0", "lo"]
    assert sorted(link_names(netns=host.netns)) == sorted(
        ["berth0", "lo", host_veth_name("a"), host_veth_name("b")]
    )
    server = respond_in(ns_b, ip_b, 9000, b"from-b")
    try:
        assert fetch_from(ns_a, ip_b, 9000) == "from-b"
        # the container's own loopback is up, and the host reaches it by address
        assert fetch_from(host.netns, ip_b, 9000) == "from-b"
    finally:
        server.close()
    host.remove("b")
    assert host_veth_name("b") not in link_names(netns=host.netns)
    assert host.ipam.lookup("b") is None


def test_published_port_answers_on_the_host_and_is_removed(host: Host) -> None:
    ns_a, _ip_a = host.add("web")
    ns_c, _ = host.add("client")
    server = respond_in(ns_a, ANY_ADDRESS, 80, b"published")
    gateway = str(host.ipam.gateway)
    try:
        publish_port("tcp", 8080, host.ipam.lookup("web"), 80, netns=host.netns)  # type: ignore[arg-type]
        assert [p.host_port for p in published_ports(netns=host.netns)] == [8080]
        # locally generated (output hook) and from a container via the host (hairpin)
        assert fetch_from(host.netns, gateway, 8080) == "published"
        assert fetch_from(ns_c, gateway, 8080) == "published"
        # on the host's own loopback too, as with docker -p (route_localnet + masquerade)
        assert fetch_from(host.netns, "127.0.0.1", 8080) == "published"
        # but the host's loopback services stay out of the containers' reach, also for
        # a container that sends to 127.0.0.1 on the wire (which route_localnet on the
        # bridge would accept without the table's guard)
        assert fetch_from(ns_c, gateway, 8080) == "published"
        listener = in_netns(
            netns_path(host.netns), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        )
        with listener:
            listener.bind(("127.0.0.1", 9100))
            listener.settimeout(0.5)
            bridge_mac = json.loads(
                subprocess.run(
                    ["ip", "-n", host.netns, "-j", "link", "show", "berth0"],
                    capture_output=True, text=True, check=True,
                ).stdout
            )[0]["address"]  # fmt: skip
            client_ip = str(host.ipam.lookup("client"))
            for payload in (b"probe-1", b"probe-2", b"probe-3"):
                send_raw_udp(ns_c, "eth0", bridge_mac, client_ip, "127.0.0.1", 9100, payload)
            with pytest.raises(TimeoutError):
                listener.recvfrom(64)
            # the same datagram from the host's own loopback arrives: the port is open
            sender = in_netns(
                netns_path(host.netns), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            )
            with sender:
                sender.sendto(b"local", ("127.0.0.1", 9100))
            assert listener.recvfrom(64)[0] == b"local"
        assert unpublish_port("tcp", 8080, netns=host.netns) is True
        assert unpublish_port("tcp", 8080, netns=host.netns) is False
        assert published_ports(netns=host.netns) == []
        assert fetch_from(host.netns, gateway, 8080).startswith("FAILED")
    finally:
        server.close()


def test_a_taken_port_is_refused(host: Host) -> None:
    _, _ip_a = host.add("a")
    target = host.ipam.lookup("a")
    assert target is not None
    publish_port("tcp", 8081, target, 80, netns=host.netns)
    with pytest.raises(PortInUse, match=r"tcp port 8081 .*already published to 10\.250\.1\.\d+:80"):
        publish_port("tcp", 8081, target, 81, netns=host.netns)
    listener = respond_in(host.netns, ANY_ADDRESS, 8082, b"x")
    try:
        with pytest.raises(PortInUse, match=r"tcp port 8082 .*a process on the host listens"):
            publish_port("tcp", 8082, target, 80, netns=host.netns)
    finally:
        listener.close()
    # a udp port with the same number is a different port
    publish_port("udp", 8081, target, 53, netns=host.netns)
    assert len(published_ports(netns=host.netns)) == 2


def test_failed_attach_leaves_nothing(host: Host) -> None:
    with pytest.raises(NetworkError, match="create veth"):
        attach_container(
            "/run/netns/" + unique("btmissing"),
            host.network.bridge,
            host.ipam.interface(host.ipam.allocate("ghost")),
            host.ipam.gateway,
            name="ghost",
            host_netns=host.netns,
        )
    assert host_veth_name("ghost") not in link_names(netns=host.netns)
    host.ipam.release("ghost")
