from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from runners.clusterstate import (
    AgentRecord,
    ClusterState,
    find_clashes,
    load_state,
    plan_cluster,
    save_state,
)
from runners.network import InvalidNetworkInput

pytestmark = pytest.mark.unit


def test_default_plan_addresses(tmp_path: Path) -> None:
    plan = plan_cluster("dev", 3, tmp_path)
    assert str(plan.gateway) == "10.240.0.1/24"
    assert [str(h.address) for h in plan.hosts] == [
        "10.240.0.11/24",
        "10.240.0.12/24",
        "10.240.0.13/24",
    ]
    assert [str(h.subnet) for h in plan.hosts] == [
        "10.241.1.0/24",
        "10.241.2.0/24",
        "10.241.3.0/24",
    ]
    assert [h.netns for h in plan.hosts] == ["berth-dev-h1", "berth-dev-h2", "berth-dev-h3"]
    host = plan.hosts[0]
    assert host.agent_url == "http://10.240.0.11:7420"
    assert host.socket == tmp_path / "h1" / "agent.sock"
    assert len(plan.bridge) == 15
    assert len(host.root_veth) == 15
    assert len({plan.bridge, *(h.root_veth for h in plan.hosts)}) == 4
    assert host.network.gateway.ip == IPv4Address("10.241.1.1")
    assert host.listing()["labels"] == {"cluster": "dev", "host": "h1"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"link": "10.240.0.0/33"}, "cluster subnet .*not an IPv4 network"),
        ({"link": "nonsense"}, "not an IPv4 network"),
        ({"pool": "10.241.0.0/24"}, "container subnet pool .*too small"),
        ({"link": "10.241.0.0/24"}, "overlaps container subnet pool"),
        ({"link": "10.240.0.0/28", "hosts": 5}, "room for 4 hosts"),
        ({"pool": "10.241.0.0/22", "hosts": 4}, "room for 3 /24 host subnets"),
        ({"hosts": 0}, "at least one host"),
        ({"name": "Bad_Name"}, "cluster name"),
        ({"name": "averyveryverylongname"}, "cluster name"),
    ],
)
def test_bad_input(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "dev", "hosts": 2, **kwargs}
    name, hosts = args.pop("name"), args.pop("hosts")
    with pytest.raises(InvalidNetworkInput, match=message):
        plan_cluster(name, hosts, tmp_path, **args)  # type: ignore[arg-type]


def test_clashes_with_existing_routes(tmp_path: Path) -> None:
    plan = plan_cluster("dev", 2, tmp_path)
    in_use = [
        IPv4Network("192.0.2.0/24"),
        IPv4Network("10.240.0.0/16"),
        IPv4Network("10.241.5.0/24"),
    ]
    problems = find_clashes(plan, in_use)
    assert problems == [
        "cluster subnet 10.240.0.0/24 overlaps 10.240.0.0/16, already in use on this machine;"
        " choose a free range with --subnet",
        "container subnet pool 10.241.0.0/16 overlaps 10.241.5.0/24, already in use on this"
        " machine; choose a free range with --container-subnet",
    ]
    assert find_clashes(plan, [IPv4Network("192.0.2.0/24")]) == []


def test_state_round_trip(tmp_path: Path) -> None:
    plan = plan_cluster("dev", 2, tmp_path, link="10.250.9.0/24", pool="10.251.0.0/16", port=7500)
    state = ClusterState(plan).with_agent(AgentRecord("h1", 1234, 99))
    save_state(state)
    loaded = load_state(tmp_path)
    assert loaded == state
    assert loaded is not None
    assert loaded.agent("h1") == AgentRecord("h1", 1234, 99)
    assert load_state(tmp_path / "none") is None
