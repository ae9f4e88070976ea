from __future__ import annotations

import pytest

from runners.net.names import host_veth_name, netns_path, peer_veth_name
from runners.network import (
    InvalidNetworkInput,
    container_netns_name,
    hashed_ifname,
    validate_ifname,
)

pytestmark = pytest.mark.unit


def test_hashed_names_fit_ifnamsiz_and_are_stable() -> None:
    long_id = "a-very-long-container-identifier-" * 4
    name = host_veth_name(long_id)
    assert len(name) == 15
    assert name.startswith("vb")
    assert name == host_veth_name(long_id)
    assert name != host_veth_name(long_id + "x")
    assert peer_veth_name(long_id) != name
    assert validate_ifname(name) == name


def test_hashed_ifname_rejects_long_prefix() -> None:
    with pytest.raises(ValueError, match="prefix"):
        hashed_ifname("toolong", "x")


@pytest.mark.parametrize("bad", ["", "sixteen-chars-xx", "has space", "a/b", ".."])
def test_invalid_interface_names(bad: str) -> None:
    with pytest.raises(InvalidNetworkInput, match="interface name"):
        validate_ifname(bad)


def test_container_netns_names_are_prefixed_by_host() -> None:
    assert container_netns_name("berth-dev-h1", "web-1") == "berth-dev-h1-web-1"
    assert netns_path("berth-dev-h1-web-1") == "/run/netns/berth-dev-h1-web-1"
    assert netns_path("/proc/1/ns/net") == "/proc/1/ns/net"
    with pytest.raises(InvalidNetworkInput, match="namespace name"):
        container_netns_name("host", "../escape")
