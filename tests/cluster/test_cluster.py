"""A real three-host cluster of network namespaces, with the stand-in agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runners.cluster import cluster_down, cluster_status, cluster_up, default_agent_argv
from runners.clusterstate import ClusterError, ClusterState, HostSpec, load_state, plan_cluster
from runners.network import (
    Ipam,
    attach_container,
    container_netns_name,
    create_container_netns,
    publish_port,
)
from tests.helpers.procs import wait_until
from tests.network.support import ANY_ADDRESS, fetch_from, leftovers, respond_in, unique

pytestmark = pytest.mark.privileged

STANDIN = Path(__file__).with_name("standin_agent.py")
LINK = "10.252.0.0/24"
POOL = "10.253.0.0/16"


def standin_argv(host: HostSpec) -> list[str]:
    # the real agent's argv with the stand-in script in place of ``-m runners.agent``
    return [sys.executable, str(STANDIN), *default_agent_argv(host)[3:]]


def cluster_leftovers(state: ClusterState) -> list[str]:
    plan = state.plan
    found = leftovers(f"berth-{plan.name}-") + leftovers(plan.bridge)
    for host in plan.hosts:
        found += leftovers(host.root_veth)
    return found


@pytest.fixture
def cluster(tmp_path: Path, no_leaks: None) -> Iterator[ClusterState]:
    plan = plan_cluster(unique("t"), 3, tmp_path / "cluster", link=LINK, pool=POOL)
    state = cluster_up(plan, agent_argv=standin_argv, ready_timeout=20)
    try:
        yield state
    finally:
        cluster_down(plan.data_dir)
    assert cluster_leftovers(state) == []


def wire_container(host: HostSpec, container: str) -> tuple[str, str]:
    ipam = Ipam(host.data_dir / "ipam.json", host.subnet)
    name = container_netns_name(host.netns, container)
    path = create_container_netns(name)
    address = ipam.allocate(container)
    attach_container(
        path,
        host.network.bridge,
        ipam.interface(address),
        ipam.gateway,
        name=container,
        host_netns=host.netns,
    )
    return name, str(address)


def test_hosts_and_containers_reach_each_other(cluster: ClusterState) -> None:
    h1, h2, h3 = cluster.plan.hosts
    statuses = cluster_status(cluster.plan.data_dir)
    assert [(s.host.name, s.alive, s.healthy) for s in statuses] == [
        ("h1", True, True),
        ("h2", True, True),
        ("h3", True, True),
    ]
    listing = json.loads((cluster.plan.data_dir / "hosts.json").read_text())
    assert [h["agent_url"] for h in listing["hosts"]] == [
        "http://10.252.0.11:7420",
        "http://10.252.0.12:7420",
        "http://10.252.0.13:7420",
    ]
    assert json.loads((h2.data_dir / "host.json").read_text())["subnet"] == "10.253.2.0/24"

    ns1, _ = wire_container(h1, "c1")
    ns3, ip3 = wire_container(h3, "c3")
    server = respond_in(ns3, ANY_ADDRESS, 8000, b"hello-from-h3")
    try:
        assert fetch_from(ns1, ip3, 8000) == "hello-from-h3"
        assert fetch_from(None, ip3, 8000) == "hello-from-h3"  # the root namespace too
        publish_port("tcp", 8080, ip3, 8000, netns=h3.netns)  # type: ignore[arg-type]
        address3 = str(h3.address.ip)
        assert fetch_from(h2.netns, address3, 8080) == "hello-from-h3"
        assert fetch_from(h3.netns, address3, 8080) == "hello-from-h3"
        assert fetch_from(ns1, address3, 8080) == "hello-from-h3"
        # h1 does not hijack port 8080 of other hosts: nothing is published on h1
        assert fetch_from(h2.netns, str(h1.address.ip), 8080).startswith("FAILED")
    finally:
        server.close()


def test_down_after_agents_were_killed(cluster: ClusterState) -> None:
    host = cluster.plan.hosts[0]
    wire_container(host, "orphan")
    for record in cluster.agents:
        os.kill(record.pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: wait (bounded) until every pid is gone
    wait_until(lambda: not any(s.alive for s in cluster_status(cluster.plan.data_dir)), 10)
    statuses = cluster_status(cluster.plan.data_dir)
    assert [(s.alive, s.healthy) for s in statuses] == [(False, False)] * 3
    assert cluster_down(cluster.plan.data_dir) is not None
    assert cluster_leftovers(cluster) == []
    assert load_state(cluster.plan.data_dir) is None
    assert cluster_down(cluster.plan.data_dir) is None  # idempotent


def test_failing_agent_leaves_nothing(tmp_path: Path, no_leaks: None) -> None:
    plan = plan_cluster(unique("f"), 2, tmp_path / "c", link=LINK, pool=POOL)
    broken: Callable[[HostSpec], list[str]] = lambda host: [  # noqa: E731
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('agent refuses to start'); sys.exit(3)",
    ]
    with pytest.raises(ClusterError, match=r"exited during start-up(.|\n)*agent refuses to start"):
        cluster_up(plan, agent_argv=broken, ready_timeout=10)
    assert cluster_leftovers(ClusterState(plan)) == []
    assert load_state(plan.data_dir) is None


def berth(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-c",
        "import sys; from pipeline.cli.main import main; sys.exit(main())",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_cli_up_status_down(tmp_path: Path, no_leaks: None) -> None:
    name = unique("c")
    data = str(tmp_path / "cl")
    template = f"{{python}} {STANDIN} --data {{data}} --listen unix:{{socket}} --listen tcp://{{address}}:{{port}} --token-file {{token_file}}"
    common = ["--name", name, "--data", data]
    up = berth(
        "cluster",
        "up",
        "--hosts",
        "3",
        *common,
        "--subnet",
        LINK,
        "--container-subnet",
        POOL,
        "--agent-command",
        template,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert f"cluster {name} is up: 3 hosts" in up.stdout
        again = berth("cluster", "up", "--hosts", "3", *common, "--agent-command", template)
        assert again.returncode == 1
        assert f"cluster {name} is already up" in again.stderr
        other = berth(
            "cluster",
            "up",
            "--hosts",
            "1",
            "--name",
            unique("o"),
            "--data",
            str(tmp_path / "other"),
            "--subnet",
            LINK,
            "--container-subnet",
            "10.254.0.0/16",
            "--agent-command",
            template,
        )
        assert other.returncode == 1
        assert "cluster subnet 10.252.0.0/24 overlaps" in other.stderr
        assert "--subnet" in other.stderr
        status = berth("cluster", "status", *common, "--json")
        assert status.returncode == 0, status.stderr
        hosts = json.loads(status.stdout)["hosts"]
        assert [(h["name"], h["healthy"]) for h in hosts] == [
            ("h1", True),
            ("h2", True),
            ("h3", True),
        ]
        table = berth("cluster", "status", *common)
        assert table.stdout.splitlines()[0].split() == [
            "HOST",
            "ADDRESS",
            "SUBNET",
            "PID",
            "ALIVE",
            "HEALTHY",
        ]
        pids = [h["pid"] for h in hosts]
        assert all(isinstance(pid, int) for pid in pids)
    finally:
        down = berth("cluster", "down", *common)
    assert down.returncode == 0, down.stderr
    assert f"cluster {name} is down" in down.stdout
    assert leftovers(f"berth-{name}-") == []
    assert all(
        not Path(f"/proc/{pid}").exists()
        or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
        for pid in pids
    )
    again = berth("cluster", "down", *common)
    assert again.returncode == 0
    assert "nothing to do" in again.stdout


def test_cli_bad_input(tmp_path: Path) -> None:
    bad = berth(
        "cluster", "up", "--hosts", "2", "--data", str(tmp_path), "--subnet", "10.252.0.0/40"
    )
    assert bad.returncode == 1
    assert "not an IPv4 network" in bad.stderr
    many = berth("cluster", "up", "--hosts", "300", "--data", str(tmp_path))
    assert many.returncode == 1
    assert "room for 244 hosts" in many.stderr
    template = berth(
        "cluster", "up", "--hosts", "1", "--data", str(tmp_path), "--agent-command", "{nope}"
    )
    assert template.returncode == 2
    assert "unknown placeholder" in template.stderr
    missing = berth("cluster", "status", "--data", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert "no cluster in" in missing.stderr
