"""Real containers through a real agent: isolation, shared layers, limits, ports, restarts."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from runners.agent.client import AgentClient
from runners.agent.launch import run_dir
from runners.agent.rundir import fs_type_at
from tests.agent.conftest import RunningAgent
from tests.helpers.procs import wait_until

pytestmark = pytest.mark.privileged

SLEEPER = ["sh", "-c", "echo pid=$$; exec sleep 600"]


@pytest.fixture
def client(shared_agent: RunningAgent) -> AgentClient:
    made = shared_agent.client()
    yield made  # type: ignore[misc]
    for item in made.instances():
        made.delete_instance(item["id"])
    made.close()


def _sh(client: AgentClient, instance: str, script: str) -> tuple[int, str]:
    result = client.exec(instance, ["sh", "-c", script], timeout=20)
    return int(result["exit_code"]), str(result["stdout"]) + str(result["stderr"])


def _host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_a_container_sees_only_itself(client: AgentClient, busybox_ref: str) -> None:
    spec = {"image": busybox_ref, "command": SLEEPER, "stop_timeout": 0.2}
    one = client.put_instance("iso-one", spec)
    two = client.put_instance("iso-two", spec)
    assert one["state"] == "running"
    assert two["state"] == "running"
    assert one["address"] != two["address"]

    # UTS: the hostname is the instance id; PID: the command is PID 1
    result = _sh(client, "iso-one", "busybox hostname")
    assert result == (0, "iso-one\n"), result
    wait_until(lambda: b"pid=1" in client.logs("iso-one"), timeout=10)
    # network: loopback and its own eth0 with its own address, nothing else
    code, links = _sh(client, "iso-one", "busybox ip -o addr")
    assert code == 0
    names = {line.split()[1] for line in links.splitlines()}
    assert names == {"lo", "eth0"}
    assert f"inet {one['address']}/" in links
    assert two["address"] not in links
    # IPC: a POSIX message queue made in one is invisible in the other
    # (busybox-static has no ipcmk; /dev/mqueue lists the queues of the IPC namespace)
    code, made = _sh(client, "iso-one", "busybox touch /dev/mqueue/berth-q && ls /dev/mqueue")
    assert (code, made) == (0, "berth-q\n")
    assert _sh(client, "iso-two", "ls /dev/mqueue") == (0, "")
    # mounts: an overlay root, nothing of the host's data dir or of the other container
    code, mounts = _sh(client, "iso-one", "cat /proc/self/mounts")
    roots = [line for line in mounts.splitlines() if line.split()[1:2] == ["/"]]
    assert len(roots) == 1, mounts
    assert roots[0].startswith("overlay / overlay"), mounts
    assert "iso-two" not in mounts
    others = [line for line in mounts.splitlines() if line not in roots]
    assert not any("/tmp/bta-" in line for line in others), mounts
    # user namespace: root inside, an unprivileged shifted uid outside
    assert _sh(client, "iso-one", "id -u")[1].strip() == "0"
    assert _host_uid(int(one["pid"])) == 100000


def test_the_network_is_up_before_the_first_instruction(
    client: AgentClient, busybox_ref: str
) -> None:
    # the network is connected while the runtime creates the container; the process
    # waits at the start gate, so its very first command sees its address and route
    script = "busybox ip -o -4 addr show dev eth0; busybox ip route; exec sleep 600"
    view = client.put_instance(
        "net-first", {"image": busybox_ref, "command": ["sh", "-c", script], "stop_timeout": 0.2}
    )
    wait_until(lambda: b"default via" in client.logs("net-first"), timeout=10)
    output = client.logs("net-first").decode()
    assert f"inet {view['address']}/" in output, output
    assert "error" not in client.logs("net-first", stream="stderr").decode().lower()


def test_two_containers_share_lower_layers_and_not_writes(
    client: AgentClient, shared_agent: RunningAgent, busybox_ref: str
) -> None:
    spec = {"image": busybox_ref, "command": SLEEPER, "stop_timeout": 0.2}
    client.put_instance("cow-one", spec)
    client.put_instance("cow-two", spec)
    lowers = []
    for name in ("cow-one", "cow-two"):
        rootfs = run_dir(shared_agent.data) / "containers" / name / "rootfs"
        line = next(
            m for m in Path("/proc/self/mountinfo").read_text().splitlines()
            if m.split(" ")[4] == str(rootfs)
        )  # fmt: skip
        option = next(o for o in line.split(" - ")[1].split(",") if o.startswith("lowerdir="))
        lowers.append([Path(p) for p in option.removeprefix("lowerdir=").split(":")])
    assert [p.stat().st_ino for p in lowers[0]] == [p.stat().st_ino for p in lowers[1]]
    assert _sh(client, "cow-one", "echo mine > /written-here")[0] == 0
    assert _sh(client, "cow-one", "cat /written-here") == (0, "mine\n")
    assert _sh(client, "cow-two", "cat /written-here")[0] != 0
    assert not any((lower / "written-here").exists() for lower in lowers[0])
    # the copy-on-write layer is kept on disk, the mount point on the agent's tmpfs
    upper = shared_agent.data / "containers" / "cow-one" / "upper"
    assert (upper / "written-here").read_text() == "mine\n"
    assert fs_type_at(run_dir(shared_agent.data)) == "tmpfs"


def test_a_memory_limit_is_enforced_and_reported(client: AgentClient, busybox_ref: str) -> None:
    spec = {
        "image": busybox_ref,
        "command": ["busybox", "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=60"],
        "resources": {"memory_bytes": 24 << 20},
    }
    client.put_instance("hungry", spec)
    wait_until(lambda: client.instance("hungry")["state"] == "exited", timeout=30)
    wait_until(lambda: client.instance("hungry")["last_exit_code"] is not None, timeout=10)
    view = client.instance("hungry")
    assert view["exit_code"] == 137
    assert view["oom_killed"] is True


def test_a_published_port_answers_and_health_follows(
    client: AgentClient, shared_agent: RunningAgent, busybox_ref: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = {
        "image": busybox_ref,
        "command": ["httpd", "-f", "-p", "8080"],
        "ports": [{"host": port, "container": 8080}],
        "health": {"kind": "http", "port": 8080, "path": "/etc/hostname", "interval": 0.2},
        "stop_timeout": 0.5,
    }
    client.put_instance("web", spec)
    wait_until(lambda: client.instance("web")["health"] == "healthy", timeout=15)
    with socket.create_connection((shared_agent.gateway, port), timeout=5) as conn:
        conn.sendall(b"GET /etc/hostname HTTP/1.0\r\n\r\n")
        answer = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (chunk := conn.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.")
    assert answer.endswith(b"web\n")


def test_on_failure_restarts_with_back_off(client: AgentClient, busybox_ref: str) -> None:
    spec = {
        "image": busybox_ref,
        "command": ["sh", "-c", "echo run; exit 3"],
        "restart": {"policy": "on-failure", "max_retries": 2, "backoff": 0.05},
    }
    client.put_instance("flaky", spec)
    wait_until(lambda: client.instance("flaky")["restarts"] == 2, timeout=20)
    wait_until(lambda: client.instance("flaky")["state"] == "exited", timeout=20)
    view = client.instance("flaky")
    assert view["last_exit_code"] == 3
    assert client.logs("flaky", stream="stdout") == b"run\nrun\nrun\n"
    assert client.logs("flaky", tail=1, stream="stdout") == b"run\n"
