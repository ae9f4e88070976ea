"""``kill -9`` of an agent: its containers keep running and a new agent adopts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners.agent.launch import run_dir
from runners.agent.rundir import fs_type_at
from runners.cluster import mounts_under
from tests.agent.conftest import Agents
from tests.helpers.procs import wait_until

pytestmark = pytest.mark.privileged


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_containers_outlive_a_killed_agent_and_are_adopted(
    no_leaks: None, agents: Agents, busybox_ref: str
) -> None:
    agent = agents.start()
    spec = {
        "image": busybox_ref,
        "command": ["httpd", "-f", "-p", "8080"],
        "health": {"kind": "tcp", "port": 8080, "interval": 0.2},
        "stop_timeout": 0.5,
    }
    with agent.client() as client:
        first = client.put_instance("keep", spec)
        gone = client.put_instance("gone", {**spec, "command": ["sleep", "600"], "health": None})
        client.delete_instance("gone")
        boot = client.info()["boot_id"]
    agent.kill9()
    assert _alive(int(first["pid"])), "the container died with its agent"

    agent.start()
    with agent.client() as client:
        assert client.info()["boot_id"] != boot
        view = client.instance("keep")
        assert view["state"] == "running"
        assert view["pid"] == first["pid"]
        assert view["address"] == first["address"]
        wait_until(lambda: client.instance("keep")["health"] == "healthy", timeout=15)
        later = client.put_instance("later", {**spec, "command": ["sleep", "600"], "health": None})
        # neither the running container's address nor the deleted one's comes back
        assert later["address"] not in (first["address"], gone["address"])
        client.delete_instance("later")
        client.delete_instance("keep")
    assert not _alive(int(first["pid"]))


def test_the_run_tmpfs_outlives_an_agent_until_its_last_container(
    agents: Agents, busybox_ref: str
) -> None:
    agent = agents.start()
    run = run_dir(agent.data)
    assert fs_type_at(run) == "tmpfs"
    spec = {"image": busybox_ref, "command": ["sleep", "600"], "stop_timeout": 0.2}
    with agent.client() as client:
        pid = int(client.put_instance("stays", spec)["pid"])
    assert (run / "containers" / "stays" / "config.json").is_file()
    assert (agent.data / "containers" / "stays" / "upper").is_dir()
    agent.stop()
    # the container runs on, so its state does too
    assert _alive(pid)
    assert fs_type_at(run) == "tmpfs"

    agent.start()
    with agent.client() as client:
        assert client.instance("stays")["pid"] == pid
        client.delete_instance("stays")
    agent.stop()
    assert fs_type_at(run) is None
    assert mounts_under(agent.data) == []


def test_python_m_runners_agent_refuses_tcp_without_a_token(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "runners.agent", "--data", str(tmp_path / "d"),
            "--network", "isolated", "--listen", "tcp://127.0.0.1:1"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "TCP listeners need a token" in result.stderr
    assert os.path.isdir(tmp_path / "d")
