"""The plan and the record of a simulated cluster (pure, plus its JSON files).

``plan_cluster`` decides every name and address before anything is created; the plan
is written to ``cluster.json`` first, and each agent's pid is added as it starts, so
``berth cluster down`` can remove everything even after a crash half-way through
``up`` or after the agents were killed.

Addresses: the cluster link (default ``10.240.0.0/24``) carries the cluster bridge at
``.1`` and host *i* at ``.(10+i)``; host *i* owns container subnet number *i* of the
container pool (default ``10.241.i.0/24``). These ranges exist only inside the
namespaces and the bridge that the cluster makes; the bridge has no uplink.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from runners.errors import RunnerError
from runners.net.errors import InvalidNetworkInput
from runners.net.hostnet import HostNetwork
from runners.net.ipam import parse_subnet
from runners.net.names import hashed_ifname

DEFAULT_LINK = "10.240.0.0/24"
DEFAULT_POOL = "10.241.0.0/16"
DEFAULT_HOST_PREFIX = 24
DEFAULT_AGENT_PORT = 7420
HOST_OFFSET = 10
STATE_FILE = "cluster.json"
HOSTS_FILE = "hosts.json"
HOST_FILE = "host.json"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")


class ClusterError(RunnerError):
    """A simulated cluster could not be brought up, inspected or taken down."""


@dataclass(frozen=True)
class HostSpec:
    """One simulated host: its namespace, addresses, agent endpoints and files."""

    index: int
    name: str
    cluster: str
    netns: str
    address: IPv4Interface
    subnet: IPv4Network
    data_dir: Path
    port: int
    root_veth: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def agent_url(self) -> str:
        return f"http://{self.address.ip}:{self.port}"

    @property
    def socket(self) -> Path:
        return self.data_dir / "agent.sock"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "token"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "agent.log"

    @property
    def host_file(self) -> Path:
        return self.data_dir / HOST_FILE

    @property
    def network(self) -> HostNetwork:
        """What the host's agent needs to wire its containers."""
        return HostNetwork(
            name=self.name,
            subnet=self.subnet,
            address=self.address.ip,
            netns=self.netns,
            netns_prefix=self.netns,
        )

    def listing(self) -> dict[str, object]:
        """This host's entry in the host list the control plane reads."""
        return {
            "name": self.name,
            "address": str(self.address.ip),
            "agent_url": self.agent_url,
            "unix_socket": str(self.socket),
            "token_file": str(self.token_file),
            "subnet": str(self.subnet),
            "netns": self.netns,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class ClusterPlan:
    """Every name and address of a cluster, decided before anything is created."""

    name: str
    link: IPv4Network
    pool: IPv4Network
    bridge: str
    data_dir: Path
    hosts: tuple[HostSpec, ...]

    @property
    def gateway(self) -> IPv4Interface:
        """The cluster bridge's address in the root namespace."""
        return IPv4Interface(f"{self.link.network_address + 1}/{self.link.prefixlen}")

    @property
    def netns_prefix(self) -> str:
        return f"berth-{self.name}-"


def validate_cluster_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidNetworkInput(
            f"cluster name {name!r}: use a lowercase letter then up to 15 lowercase letters"
            " or digits (it becomes part of namespace names)"
        )
    return name


def plan_cluster(
    name: str,
    hosts: int,
    data_dir: Path,
    *,
    link: str = DEFAULT_LINK,
    pool: str = DEFAULT_POOL,
    host_prefix: int = DEFAULT_HOST_PREFIX,
    port: int = DEFAULT_AGENT_PORT,
) -> ClusterPlan:
    """Decide names and addresses for ``hosts`` hosts; raise if they do not fit."""
    validate_cluster_name(name)
    link_net = parse_subnet(link, what="cluster subnet (--subnet)")
    pool_net = parse_subnet(
        pool, what="container subnet pool (--container-subnet)", max_prefix=host_prefix
    )
    if hosts < 1:
        raise InvalidNetworkInput(f"--hosts {hosts}: a cluster needs at least one host")
    if link_net.overlaps(pool_net):
        raise InvalidNetworkInput(
            f"cluster subnet {link_net} overlaps container subnet pool {pool_net}; pick"
            " ranges that do not overlap"
        )
    fit_link = link_net.num_addresses - 2 - HOST_OFFSET
    if hosts > fit_link:
        raise InvalidNetworkInput(
            f"--hosts {hosts}: cluster subnet {link_net} has room for {max(fit_link, 0)} hosts"
            f" (host i gets .{HOST_OFFSET}+i); use a larger --subnet"
        )
    if not 1 <= host_prefix - pool_net.prefixlen <= 16 or host_prefix > 30:
        raise InvalidNetworkInput(
            f"container subnet pool {pool_net} is too small to split into /{host_prefix}"
            " host subnets; use a larger --container-subnet, e.g. 10.241.0.0/16"
        )
    fit_pool = 2 ** (host_prefix - pool_net.prefixlen) - 1
    if hosts > fit_pool:
        raise InvalidNetworkInput(
            f"--hosts {hosts}: container pool {pool_net} has room for {fit_pool} /{host_prefix}"
            " host subnets; use a larger --container-subnet"
        )
    if not 1 <= port <= 65535:
        raise InvalidNetworkInput(f"agent port {port}: must be between 1 and 65535")
    subnets = pool_net.subnets(new_prefix=host_prefix)
    next(subnets)  # subnet 0 stays unused so host i owns subnet i
    specs = []
    for index, subnet in zip(range(1, hosts + 1), subnets, strict=False):
        host_name = f"h{index}"
        specs.append(
            HostSpec(
                index=index,
                name=host_name,
                cluster=name,
                netns=f"berth-{name}-{host_name}",
                address=IPv4Interface(
                    f"{link_net.network_address + HOST_OFFSET + index}/{link_net.prefixlen}"
                ),
                subnet=subnet,
                data_dir=data_dir / host_name,
                port=port,
                root_veth=hashed_ifname("bh", name, host_name),
                labels=(("cluster", name), ("host", host_name)),
            )
        )
    return ClusterPlan(
        name=name,
        link=link_net,
        pool=pool_net,
        bridge=hashed_ifname("bc", name),
        data_dir=data_dir,
        hosts=tuple(specs),
    )


def find_clashes(plan: ClusterPlan, in_use: Iterable[IPv4Network]) -> list[str]:
    """Why the plan's ranges cannot be used next to the networks already ``in_use``."""
    problems = []
    for what, option, mine in (
        ("cluster subnet", "--subnet", plan.link),
        ("container subnet pool", "--container-subnet", plan.pool),
    ):
        for other in in_use:
            if mine.overlaps(other):
                problems.append(
                    f"{what} {mine} overlaps {other}, already in use on this machine;"
                    f" choose a free range with {option}"
                )
    return problems


@dataclass(frozen=True)
class AgentRecord:
    """A started agent: its pid and the start time that tells it from a reused pid."""

    host: str
    pid: int
    start_time: int


@dataclass(frozen=True)
class ClusterState:
    """What exists (or may exist) of a cluster: its plan, agents and phase."""

    plan: ClusterPlan
    phase: str = "creating"
    agents: tuple[AgentRecord, ...] = field(default=())

    def with_agent(self, record: AgentRecord) -> ClusterState:
        kept = tuple(a for a in self.agents if a.host != record.host)
        return replace(self, agents=(*kept, record))

    def agent(self, host: str) -> AgentRecord | None:
        return next((a for a in self.agents if a.host == host), None)

    def to_json(self) -> dict[str, object]:
        plan = self.plan
        return {
            "version": FORMAT_VERSION,
            "name": plan.name,
            "phase": self.phase,
            "link": str(plan.link),
            "pool": str(plan.pool),
            "bridge": plan.bridge,
            "data_dir": str(plan.data_dir),
            "hosts": [
                {
                    "index": h.index,
                    "name": h.name,
                    "netns": h.netns,
                    "address": str(h.address),
                    "subnet": str(h.subnet),
                    "data_dir": str(h.data_dir),
                    "port": h.port,
                    "root_veth": h.root_veth,
                    "labels": dict(h.labels),
                }
                for h in plan.hosts
            ],
            "agents": [
                {"host": a.host, "pid": a.pid, "start_time": a.start_time} for a in self.agents
            ],
        }

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> ClusterState:
        try:
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            name = str(data["name"])
            hosts = tuple(
                HostSpec(
                    index=int(h["index"]),
                    name=str(h["name"]),
                    cluster=name,
                    netns=str(h["netns"]),
                    address=IPv4Interface(str(h["address"])),
                    subnet=IPv4Network(str(h["subnet"])),
                    data_dir=Path(str(h["data_dir"])),
                    port=int(h["port"]),
                    root_veth=str(h["root_veth"]),
                    labels=tuple(sorted((str(k), str(v)) for k, v in h["labels"].items())),
                )
                for h in _list(data["hosts"])
            )
            plan = ClusterPlan(
                name=name,
                link=IPv4Network(str(data["link"])),
                pool=IPv4Network(str(data["pool"])),
                bridge=str(data["bridge"]),
                data_dir=Path(str(data["data_dir"])),
                hosts=hosts,
            )
            agents = tuple(
                AgentRecord(str(a["host"]), int(a["pid"]), int(a["start_time"]))
                for a in _list(data["agents"])
            )
            return cls(plan=plan, phase=str(data["phase"]), agents=agents)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ClusterError(f"{where}: not a usable cluster state file ({exc})") from exc


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def save_state(state: ClusterState) -> None:
    """Write ``cluster.json`` in the cluster's data directory atomically."""
    _write_json(state.plan.data_dir / STATE_FILE, state.to_json())


def load_state(data_dir: Path) -> ClusterState | None:
    """The cluster recorded in ``data_dir``, or None when there is none."""
    path = data_dir / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClusterError(f"{path}: corrupt cluster state ({exc})") from exc
    if not isinstance(data, dict):
        raise ClusterError(f"{path}: corrupt cluster state (not an object)")
    return ClusterState.from_json(data, where=str(path))


def write_host_list(plan: ClusterPlan) -> Path:
    """Write ``hosts.json``, the host list the control plane reads; return its path."""
    path = plan.data_dir / HOSTS_FILE
    _write_json(path, {"cluster": plan.name, "hosts": [h.listing() for h in plan.hosts]})
    return path


def remove_state_files(data_dir: Path) -> None:
    for name in (HOSTS_FILE, STATE_FILE):
        (data_dir / name).unlink(missing_ok=True)
