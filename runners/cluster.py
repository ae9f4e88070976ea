"""The simulated multi-host cluster: N network namespaces on one bridge, one agent each.

``cluster_up`` builds what :func:`runners.clusterstate.plan_cluster` planned:

- a bridge in the root namespace with the cluster link's first address and no uplink
  (nothing is forwarded or masqueraded to the machine's real interfaces);
- per host a named namespace ``berth-<cluster>-h<i>`` with a veth ``link0`` on that
  bridge, a container bridge ``berth0`` on its own subnet, forwarding on, a route to
  every other host's subnet via that host's link address, and its nftables table;
- in the root namespace a route to each host's subnet, so the control plane reaches
  containers too;
- one agent per host, started inside the host's namespace by ``nsenter`` in its own
  session, so it outlives the command that started it.

``cluster_down`` stops the agents by pid (SIGTERM, then SIGKILL), kills anything else
left in the cluster's namespaces, and removes namespaces, veths, bridge and tables;
it works from the state file alone and may be repeated.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import httpx

from runners.clusterstate import (
    AgentRecord,
    ClusterError,
    ClusterPlan,
    ClusterState,
    HostSpec,
    find_clashes,
    load_state,
    remove_state_files,
    save_state,
    write_host_list,
)
from runners.errors import NetworkError, RunnerError
from runners.net.hostnet import setup_host_network, write_host_network
from runners.net.links import (
    add_route,
    configure_interface,
    create_bridge,
    delete_link,
    enslave_up,
    link_exists,
    move_veth_end,
    networks_in_use,
)
from runners.net.names import hashed_ifname, netns_path
from runners.net.namespaces import (
    create_netns,
    list_netns,
    netns_exists,
    nsenter_argv,
    pids_in_netns,
    remove_netns,
)
from runners.net.ports import remove_host_table
from runners.runtime.host import remove_cgroup_tree, remove_empty_cgroup
from runners.runtime.rootfs import unescape_mount_field, unmount_rootfs
from runners.runtime.spec import CGROUP_PARENT

AgentArgv = Callable[[HostSpec], list[str]]
LINK_IFNAME = "link0"
STOP_GRACE = 5.0


def default_agent_argv(host: HostSpec) -> list[str]:
    """``python -m runners.agent`` listening on the host's unix socket and TCP address."""
    return [
        sys.executable,
        "-m",
        "runners.agent",
        "--data",
        str(host.data_dir),
        "--listen",
        f"unix:{host.socket}",
        "--listen",
        f"tcp://{host.address.ip}:{host.port}",
        "--token-file",
        str(host.token_file),
    ]


@dataclass(frozen=True)
class HostStatus:
    """What ``berth cluster status`` shows for one host."""

    host: HostSpec
    pid: int | None
    alive: bool
    healthy: bool
    detail: str

    def to_json(self) -> dict[str, object]:
        return {
            **self.host.listing(),
            "pid": self.pid,
            "alive": self.alive,
            "healthy": self.healthy,
            "detail": self.detail,
        }


# --- processes ---------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks after boot) of a live process, None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    # our own children (tests, a long-lived caller) would stay zombies otherwise
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_running(record: AgentRecord) -> bool:
    _reap(record.pid)
    return process_start_time(record.pid) == record.start_time


def _wait_gone(pid: int, start_time: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if process_start_time(pid) != start_time:
            return True
        time.sleep(0.05)
    return False


def stop_process(pid: int, start_time: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM the process, wait up to ``grace`` seconds, then SIGKILL it.

    ``start_time`` guards against a pid that was reused by an unrelated process.
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if process_start_time(pid) != start_time:
            _reap(pid)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, start_time, wait):
            return
    raise ClusterError(f"process {pid} survived SIGKILL; check it with ps and kill it")


def spawn_in_netns(argv: list[str], netns: str, log: Path) -> AgentRecord:
    """Start ``argv`` inside ``netns`` in a new session, output to ``log``; not waited for."""
    full = nsenter_argv(netns, argv)
    log.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawnp(full[0], full, dict(os.environ), file_actions=actions, setsid=True)
    except OSError as exc:
        raise ClusterError(f"{' '.join(full)}: could not start: {exc}") from exc
    start = process_start_time(pid)
    if start is None:
        _reap(pid)
        raise ClusterError(f"{' '.join(full)}: exited at once; see {log}")
    return AgentRecord(host="", pid=pid, start_time=start)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- health ------------------------------------------------------------------------


def probe_agent(host: HostSpec, timeout: float = 2.0) -> tuple[bool, str]:
    """GET ``/v1/info`` on the host's TCP address with its token: (healthy, detail)."""
    try:
        token = host.token_file.read_text().strip()
    except OSError as exc:
        return False, f"no token: {exc}"
    try:
        # trust_env=False: never route cluster traffic through a proxy from the environment
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(
                f"{host.agent_url}/v1/info", headers={"Authorization": f"Bearer {token}"}
            )
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}"
    return True, "ok"


def _wait_healthy(state: ClusterState, timeout: float) -> None:
    pending = {h.name: h for h in state.plan.hosts}
    deadline = time.monotonic() + timeout
    details: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name, host in list(pending.items()):
            record = state.agent(name)
            if record is None or not _is_running(record):
                raise ClusterError(
                    f"agent of host {name} exited during start-up; its log"
                    f" ({host.log_file}) ends with:\n{_tail(host.log_file)}"
                )
            healthy, details[name] = probe_agent(host, timeout=1.0)
            if healthy:
                del pending[name]
        if pending:
            time.sleep(0.1)
    if pending:
        name, host = next(iter(pending.items()))
        raise ClusterError(
            f"agent of host {name} did not answer GET {host.agent_url}/v1/info within"
            f" {timeout:.0f}s ({details.get(name)}); its log ends with:\n{_tail(host.log_file)}"
        )


# --- up ----------------------------------------------------------------------------


def _refuse_if_up(plan: ClusterPlan) -> None:
    existing = load_state(plan.data_dir)
    if existing is not None:
        raise ClusterError(
            f"cluster {existing.plan.name} is already up (state in {plan.data_dir});"
            " run 'berth cluster down' first"
        )
    taken = list_netns(plan.netns_prefix)
    if taken or link_exists(plan.bridge):
        raise ClusterError(
            f"cluster {plan.name} is already up elsewhere (namespaces {taken or '-'}, bridge"
            f" {plan.bridge}); run 'berth cluster down --name {plan.name} --data DIR' with its"
            " data directory, or choose another --name"
        )
    clashes = find_clashes(plan, networks_in_use())
    if clashes:
        raise ClusterError("; ".join(clashes))


def _create_host(plan: ClusterPlan, host: HostSpec) -> None:
    create_netns(host.netns)
    peer = hashed_ifname("bp", plan.name, host.name)
    move_veth_end(host.root_veth, peer, LINK_IFNAME, host.netns)
    enslave_up(host.root_veth, plan.bridge)
    configure_interface(LINK_IFNAME, host.address, netns=host.netns)
    setup_host_network(host.network)
    for other in plan.hosts:
        if other.index != host.index:
            add_route(other.subnet, other.address.ip, netns=host.netns)
    add_route(host.subnet, host.address.ip)


def _write_host_files(host: HostSpec) -> None:
    host.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    write_host_network(host.host_file, host.network)


def cluster_up(
    plan: ClusterPlan,
    *,
    agent_argv: AgentArgv = default_agent_argv,
    ready_timeout: float = 30.0,
) -> ClusterState:
    """Create the planned cluster, start its agents and wait until each answers.

    On any failure everything created so far is removed again before the error is raised.
    """
    _refuse_if_up(plan)
    state = ClusterState(plan=plan)
    save_state(state)
    try:
        create_bridge(plan.bridge, plan.gateway)
        for host in plan.hosts:
            _create_host(plan, host)
            _write_host_files(host)
        for host in plan.hosts:
            record = spawn_in_netns(agent_argv(host), host.netns, host.log_file)
            state = state.with_agent(replace(record, host=host.name))
            save_state(state)
        _wait_healthy(state, ready_timeout)
        write_host_list(plan)
        state = replace(state, phase="up")
        save_state(state)
    except BaseException as exc:
        try:
            _teardown(state)
        except RunnerError as cleanup:
            raise ClusterError(f"{exc}\n(and cleaning up failed: {cleanup})") from exc
        remove_state_files(plan.data_dir)
        raise
    return state


# --- down --------------------------------------------------------------------------


def _kill_namespace_processes(paths: list[str]) -> None:
    for path in paths:
        for pid in pids_in_netns(path):
            start = process_start_time(pid)
            if start is not None:
                stop_process(pid, start, grace=2.0)


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first."""
    root = str(directory.resolve())
    found: list[Path] = []
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split(" ")
            if len(fields) > 1:
                target = unescape_mount_field(fields[1])
                if target == root or target.startswith(root + "/"):
                    found.append(Path(target))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _unmount_all(directory: Path) -> None:
    # the agents' container root filesystems outlive the agents and their processes
    for target in mounts_under(directory):
        unmount_rootfs(target)


def _remove_cgroups(host_name: str) -> None:
    # containers killed here (not stopped by their agent) leave their cgroups behind
    busy = remove_cgroup_tree(f"{CGROUP_PARENT}/{host_name}")
    if busy:
        raise RunnerError(
            "cgroups still in use (a process of the host is still running; stop it and"
            " run 'berth cluster down' again): " + "; ".join(busy)
        )
    # only when empty: other hosts' agents may still have theirs there
    remove_empty_cgroup(CGROUP_PARENT)


def _teardown(state: ClusterState) -> None:
    problems: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (RunnerError, OSError) as exc:
            problems.append(f"{what}: {exc}")

    plan = state.plan
    for record in state.agents:
        attempt(f"stop agent {record.pid}", partial(stop_process, record.pid, record.start_time))
    for host in plan.hosts:
        containers = list_netns(f"{host.netns}-")
        namespaces = [netns_path(n) for n in [host.netns, *containers] if netns_exists(n)]
        attempt(f"stop processes of {host.name}", partial(_kill_namespace_processes, namespaces))
        attempt(f"unmount under {host.data_dir}", partial(_unmount_all, host.data_dir))
        for name in containers:
            attempt(f"remove netns {name}", partial(remove_netns, name))
        if netns_exists(host.netns):
            table = partial(remove_host_table, netns=host.netns, table=host.network.table)
            attempt(f"remove nft table of {host.name}", table)
        attempt(f"remove netns {host.netns}", partial(remove_netns, host.netns))
        attempt(f"remove cgroups of {host.name}", partial(_remove_cgroups, host.name))
        attempt(f"delete veth {host.root_veth}", partial(delete_link, host.root_veth))
    attempt(f"delete bridge {plan.bridge}", partial(delete_link, plan.bridge))
    if problems:
        raise NetworkError(
            f"cluster {plan.name}: could not remove everything; fix and run 'berth cluster"
            " down' again:\n" + "\n".join(problems)
        )


def cluster_down(data_dir: Path) -> ClusterState | None:
    """Stop the cluster recorded in ``data_dir`` and remove all it made; None if none."""
    state = load_state(data_dir)
    if state is None:
        return None
    _teardown(state)
    remove_state_files(data_dir)
    return state


def cluster_status(data_dir: Path, *, timeout: float = 2.0) -> list[HostStatus]:
    """Each host's agent: alive (pid running) and healthy (answers ``/v1/info``)."""
    state = load_state(data_dir)
    if state is None:
        raise ClusterError(f"no cluster in {data_dir}; start one with 'berth cluster up'")
    found = []
    for host in state.plan.hosts:
        record = state.agent(host.name)
        alive = record is not None and _is_running(record)
        healthy, detail = probe_agent(host, timeout=timeout) if alive else (False, "not running")
        found.append(HostStatus(host, record.pid if record else None, alive, healthy, detail))
    return found
