"""Real agents for tests: a registry with a busybox image, agent processes, clean-up.

``busybox_ref`` is a busybox image pushed once per session to a real ``berth registry
serve`` process. ``agents`` starts ``python -m runners.agent`` processes, each with its
own data dir, bridge, subnet, nftables table and host name, and at teardown deletes
their instances, stops them by pid and removes the host network and cgroups they made.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runners import network as net
from runners.agent.client import AgentClient
from runners.agent.launch import run_dir
from runners.cluster import mounts_under
from runners.oci.client import RegistryClient
from runners.oci.layout import OCILayout
from runners.oci.reference import Reference
from tests.helpers.ociimage import write_oci_layout
from tests.helpers.procs import free_port, wait_for_port, wait_until

_SUBNETS = itertools.count(0)


@pytest.fixture(scope="session")
def busybox_ref() -> Iterator[str]:
    """``127.0.0.1:PORT/test/busybox:v1`` in a registry process that lives for the session."""
    root = Path(tempfile.mkdtemp(prefix="berth-agent-registry-"))
    port = free_port()
    log = open(root / "registry.log", "wb")  # noqa: SIM115
    argv = [
        sys.executable, "-m", "pipeline.cli.main", "registry", "serve",
        "--listen", f"127.0.0.1:{port}", "--root", str(root / "data"),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_for_port("127.0.0.1", port, timeout=30, proc=proc)  # type: ignore[arg-type]
        write_oci_layout(root / "layout", "v1", busybox=True)
        ref = Reference.parse(f"127.0.0.1:{port}/test/busybox:v1")
        with RegistryClient() as client:
            client.push_image(OCILayout.open(root / "layout"), ref, tag="v1")
        yield str(ref)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RunningAgent:
    """One agent process and how to reach it."""

    name: str
    data: Path
    socket: Path
    tcp_port: int
    token: str
    bridge: str
    table: str
    subnet: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    made: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def unix(self) -> str:
        return f"unix:{self.socket}"

    @property
    def tcp(self) -> str:
        return f"http://127.0.0.1:{self.tcp_port}"

    @property
    def gateway(self) -> str:
        return str(net.parse_subnet(self.subnet).network_address + 1)

    def client(self) -> AgentClient:
        return AgentClient(self.unix, timeout=60)

    def start(self) -> None:
        log = open(self.data.parent / f"agent-{len(self.made)}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.made.append(self.proc)
        proc = self.proc
        wait_for_port("127.0.0.1", self.tcp_port, timeout=30, proc=proc)  # type: ignore[arg-type]
        wait_until(self.socket.exists, timeout=10)

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; waited for."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=15)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.data.parent.glob("agent-*.log"))
        )


class Agents:
    """Starts agents; :meth:`cleanup` removes every trace of them."""

    def __init__(self) -> None:
        self.started: list[RunningAgent] = []

    def start(self) -> RunningAgent:
        root = Path(tempfile.mkdtemp(prefix="bta-"))
        os.chmod(root, 0o711)  # noqa: S103 -- the shifted container root must traverse it
        tag = uuid.uuid4().hex[:6]
        subnet = f"10.{200 + os.getpid() % 40}.{next(_SUBNETS) % 250}.0/24"
        token_file = root / "token"
        token = secrets.token_urlsafe(24)
        token_file.write_text(token + "\n")
        port = free_port()
        agent = RunningAgent(
            name=f"t{tag}",
            data=root / "data",
            socket=root / "a.sock",
            tcp_port=port,
            token=token,
            bridge=f"bt{tag}",
            table=f"bt_{tag}",
            subnet=subnet,
            argv=[
                sys.executable, "-m", "runners.agent", "--data", str(root / "data"),
                "--listen", f"unix:{root / 'a.sock'}", "--listen", f"tcp://127.0.0.1:{port}",
                "--token-file", str(token_file), "--host-name", f"t{tag}",
                "--subnet", subnet, "--bridge", f"bt{tag}", "--nft-table", f"bt_{tag}",
            ],
        )  # fmt: skip
        self.started.append(agent)
        agent.start()
        return agent

    def cleanup(self) -> None:
        for agent in self.started:
            self._remove(agent)

    def _remove(self, agent: RunningAgent) -> None:
        if agent.proc is not None and agent.proc.poll() is None:
            with contextlib.suppress(Exception), agent.client() as client:
                for item in client.instances():
                    client.delete_instance(item["id"])
            agent.proc.terminate()
            try:
                agent.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
                agent.proc.wait(timeout=10)
        # whatever a failed test left: containers, mounts, namespaces, the host network
        runtime_root = run_dir(agent.data) / "runtime"
        for name in container_names(agent):
            for runtime in ("crun", "runc"):
                subprocess.run(
                    [runtime, "--root", str(runtime_root), "delete", "--force", name],
                    capture_output=True,
                    check=False,
                )
        # container root filesystems first, then the agent's tmpfs
        for target in mounts_under(agent.data):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
        for name in net.list_netns(f"berth-{agent.name}-"):
            with contextlib.suppress(Exception):
                net.remove_netns(name)
        with contextlib.suppress(Exception):
            net.teardown_host_network(net.load_host_network(agent.data / "host.json"))
        for controller in Path("/sys/fs/cgroup").iterdir():
            for relative in (f"berth/{agent.name}",):
                for leftover in sorted((controller / relative).glob("*"), reverse=True):
                    if leftover.is_dir():
                        with contextlib.suppress(OSError):
                            leftover.rmdir()
                with contextlib.suppress(OSError):
                    (controller / relative).rmdir()
        shutil.rmtree(agent.data.parent, ignore_errors=True)


@pytest.fixture
def agents() -> Iterator[Agents]:
    made = Agents()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(scope="module")
def shared_agent() -> Iterator[RunningAgent]:
    """One agent for a whole module of tests that each clean up their own instances."""
    made = Agents()
    try:
        yield made.start()
    finally:
        made.cleanup()


def host_traces(agent: RunningAgent) -> dict[str, object]:
    """What creating an instance changes on the host, to compare before and after."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return {
        "netns": net.list_netns(f"berth-{agent.name}-"),
        "links": sorted(link for link in net.link_names() if link.startswith("vb")),
        "mounts": sorted(m for m in mounts if str(agent.data) in m),
        "containers": container_names(agent),
        "published": net.published_ports(table=agent.table),
        "addresses": _allocations(agent.data / "ipam.json"),
    }


def container_names(agent: RunningAgent) -> list[str]:
    """The containers with a layer or a state directory on ``agent``'s host."""
    found: set[str] = set()
    for root in (agent.data / "containers", run_dir(agent.data) / "containers"):
        if root.is_dir():
            found.update(p.name for p in root.iterdir())
    return sorted(found)


def _allocations(path: Path) -> dict[str, str]:
    try:
        found: dict[str, str] = json.loads(path.read_text()).get("allocations", {})
    except FileNotFoundError:
        return {}
    return found
