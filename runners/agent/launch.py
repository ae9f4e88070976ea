"""Starting an agent: options → objects → adoption → supervisor → listeners.

``python -m runners.agent`` and ``berth agent`` both parse their command line into
:class:`AgentOptions` and call :func:`run_agent`; nothing else reads the environment.
"""

from __future__ import annotations

import logging
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runners.agent.agent import Agent, AgentConfig
from runners.agent.app import build_app
from runners.agent.errors import BadSpec
from runners.agent.networking import InstanceNetwork, IsolatedNetwork
from runners.agent.rundir import prepare_run_dir, release_run_dir
from runners.agent.server import Listener, serve
from runners.agent.supervisor import Supervisor
from runners.oci.client import RegistryClient, RegistryOptions
from runners.runtime.host import is_hybrid_cgroup_host
from runners.runtime.oci_runtime import RuncRuntime, RuntimeCommands
from runners.runtime.spec import IdMapping
from runners.runtime.syscalls import limit_malloc_arenas

DEFAULT_SHIFT = "100000:100000:65536"
NETWORK_KINDS = ("bridge", "isolated")


@dataclass(frozen=True)
class AgentOptions:
    """The agent's command line, parsed."""

    data: Path
    listen: tuple[str, ...] = ()
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    host_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = "auto"
    network: str = "bridge"
    subnet: str | None = None
    bridge: str | None = None
    nft_table: str | None = None
    id_shift: str = DEFAULT_SHIFT
    insecure_registries: tuple[str, ...] = ()
    verbose: bool = False

    def listeners(self) -> list[Listener]:
        given = self.listen or (f"unix:{self.data / 'agent.sock'}",)
        return [Listener.parse(text) for text in given]


def parse_id_shift(text: str) -> IdMapping | None:
    """``UID:GID[:SIZE]`` or ``none`` (no user namespace: container root is host root)."""
    if text == "none":
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise BadSpec(f"--id-shift {text!r}: use UID:GID[:SIZE] (e.g. {DEFAULT_SHIFT}) or none")
    size = int(parts[2]) if len(parts) == 3 else 65536
    if int(parts[0]) == 0 or size < 1:
        raise BadSpec(f"--id-shift {text!r}: container root must not map to host root")
    return IdMapping(int(parts[0]), int(parts[1]), size)


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadSpec(f"--label {item!r}: use KEY=VALUE")
        labels[key] = value
    return labels


def read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise BadSpec(f"--token-file {path}: {exc.strerror}") from exc
    if len(token) < 16:
        raise BadSpec(f"--token-file {path}: the token must be at least 16 characters")
    return token


def build_network(options: AgentOptions, host_name: str) -> InstanceNetwork:
    if options.network == "isolated":
        return IsolatedNetwork()
    if options.network == "bridge":
        from runners.agent.bridge import BridgeNetwork

        return BridgeNetwork.create(
            options.data,
            host_name,
            subnet=options.subnet,
            bridge=options.bridge,
            table=options.nft_table,
        )
    raise BadSpec(f"--network {options.network!r}: use one of {', '.join(NETWORK_KINDS)}")


def resolve_runtime(choice: str, which: Callable[[str], str | None] = shutil.which) -> str:
    """The OCI runtime to use: ``auto`` is crun where installed, else runc.

    crun starts a container in about half of runc's time here; ``runc`` and ``crun``
    are taken as given.
    """
    if choice != "auto":
        return choice
    return "crun" if which("crun") else "runc"


def run_dir(data: Path) -> Path:
    """Where the agent keeps run-time state: a tmpfs it mounts (:mod:`runners.agent.rundir`)."""
    return data / "run"


def build_agent(options: AgentOptions) -> Agent:
    host_name = options.host_name or _cluster_host_name(options.data) or socket.gethostname()
    runtime = resolve_runtime(options.runtime)
    run = run_dir(options.data)
    if runtime == "runc":
        commands = RuntimeCommands(root=str(run / "runtime"))
    elif runtime == "crun":
        commands = RuntimeCommands.crun(
            str(run / "runtime"), hybrid_cgroups=is_hybrid_cgroup_host()
        )
    else:
        raise BadSpec(f"--runtime {options.runtime!r}: use auto, runc or crun")
    registry = RegistryClient(
        RegistryOptions(insecure_hosts=frozenset(options.insecure_registries))
    )
    options.data.mkdir(parents=True, exist_ok=True)
    prepare_run_dir(run)
    config = AgentConfig(
        data=options.data,
        host_name=host_name,
        network=build_network(options, host_name),
        runtime=RuncRuntime(commands),
        registry=registry,
        id_mapping=parse_id_shift(options.id_shift),
        labels=options.labels,
        run=run,
    )
    return Agent(config)


def _cluster_host_name(data: Path) -> str | None:
    """The host name ``berth cluster up`` gave this data dir (several agents share a kernel)."""
    path = data / "host.json"
    if not path.exists():
        return None
    from runners import network

    return network.load_host_network(path).name


def run_agent(options: AgentOptions) -> None:
    """Run the agent until SIGTERM/SIGINT; its containers keep running after it ends."""
    logging.basicConfig(
        level=logging.INFO if options.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # 50 concurrent starts used to leave ~30 MiB of per-thread malloc arenas behind
    limit_malloc_arenas(2)
    listeners = options.listeners()
    token = read_token(options.token_file)
    tls = None
    if options.tls_cert or options.tls_key:
        if not (options.tls_cert and options.tls_key):
            raise BadSpec("TLS needs both --tls-cert and --tls-key")
        tls = (options.tls_cert, options.tls_key)
    agent = build_agent(options)
    runtime = agent.config.runtime
    try:
        runtime.prepare()
        agent.adopt()
        supervisor = Supervisor(agent)
        supervisor.start()
        try:
            serve(build_app(agent), listeners, token=token, tls=tls, verbose=options.verbose)
        finally:
            supervisor.stop()
    finally:
        runtime.close()
        agent.config.registry.close()
        if agent.config.run is not None:
            release_run_dir(agent.config.run)
