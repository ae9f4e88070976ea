"""``berth cluster``: a simulated multi-host cluster on this machine.

``up`` makes N hosts out of network namespaces joined by a bridge and starts one agent
in each; ``status`` asks every agent for ``/v1/info``; ``down`` removes it all. The
cluster's files (state, host list, each host's data) live in ``--data``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from pipeline.cli.context import emit_json, json_option
from runners.cluster import (
    AgentArgv,
    HostStatus,
    cluster_down,
    cluster_status,
    cluster_up,
    default_agent_argv,
)
from runners.clusterstate import (
    DEFAULT_AGENT_PORT,
    DEFAULT_LINK,
    DEFAULT_POOL,
    HOSTS_FILE,
    HostSpec,
    plan_cluster,
)

DEFAULT_NAME = "local"
PLACEHOLDERS = ("python", "data", "socket", "address", "port", "token_file", "host", "netns")


def default_data_dir(name: str) -> Path:
    return Path("/var/lib/berth/clusters") / name


def _data_dir(name: str, data: Path | None) -> Path:
    return (data or default_data_dir(name)).absolute()


def agent_argv_from_template(template: str) -> AgentArgv:
    """An ``agent_argv`` from a command template with ``{placeholders}`` per host."""
    words = shlex.split(template)
    for word in words:
        try:
            word.format(**dict.fromkeys(PLACEHOLDERS, ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise click.BadParameter(
                f"{word!r}: unknown placeholder {exc}; use {', '.join(PLACEHOLDERS)}",
                param_hint="--agent-command",
            ) from exc

    def argv(host: HostSpec) -> list[str]:
        values = {
            "python": sys.executable,
            "data": str(host.data_dir),
            "socket": str(host.socket),
            "address": str(host.address.ip),
            "port": str(host.port),
            "token_file": str(host.token_file),
            "host": host.name,
            "netns": host.netns,
        }
        return [word.format(**values) for word in words]

    return argv


name_option = click.option(
    "--name", default=DEFAULT_NAME, show_default=True, help="Name of the cluster."
)
data_option = click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the cluster's state and hosts [default: /var/lib/berth/clusters/NAME].",
)


@click.group()
def cluster() -> None:
    """Simulate several container hosts on this machine with network namespaces."""


@cluster.command()
@click.option("--hosts", "count", type=int, required=True, help="How many hosts to create.")
@name_option
@data_option
@click.option(
    "--subnet",
    default=DEFAULT_LINK,
    show_default=True,
    help="Private range of the link between hosts (host i gets .10+i).",
)
@click.option(
    "--container-subnet",
    default=DEFAULT_POOL,
    show_default=True,
    help="Private range split into one /24 per host for its containers.",
)
@click.option("--port", default=DEFAULT_AGENT_PORT, show_default=True, help="Agents' TCP port.")
@click.option(
    "--agent-command",
    help="Command that runs an agent, with placeholders {python} {data} {socket} {address}"
    " {port} {token_file} {host} {netns} [default: python -m runners.agent ...].",
)
@click.option(
    "--timeout", default=30.0, show_default=True, help="Seconds to wait for agents to answer."
)
@json_option
def up(
    count: int,
    name: str,
    data: Path | None,
    subnet: str,
    container_subnet: str,
    port: int,
    agent_command: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Create the hosts, start their agents and write the host list."""
    plan = plan_cluster(
        name, count, _data_dir(name, data), link=subnet, pool=container_subnet, port=port
    )
    argv = default_agent_argv if agent_command is None else agent_argv_from_template(agent_command)
    state = cluster_up(plan, agent_argv=argv, ready_timeout=timeout)
    hosts_file = plan.data_dir / HOSTS_FILE
    if as_json:
        emit_json(
            {
                "cluster": plan.name,
                "hosts_file": str(hosts_file),
                "hosts": [h.listing() for h in plan.hosts],
            }
        )
        return
    for host in plan.hosts:
        record = state.agent(host.name)
        click.echo(
            f"{host.name}  {host.address.ip!s:<15} {host.subnet!s:<18} {host.agent_url}"
            f"  pid {record.pid if record else '-'}"
        )
    click.echo(f"cluster {plan.name} is up: {len(plan.hosts)} hosts; host list in {hosts_file}")


def _status_rows(statuses: list[HostStatus]) -> list[tuple[str, ...]]:
    return [
        (
            s.host.name,
            str(s.host.address.ip),
            str(s.host.subnet),
            str(s.pid or "-"),
            "yes" if s.alive else "no",
            "yes" if s.healthy else f"no ({s.detail})",
        )
        for s in statuses
    ]


@cluster.command()
@name_option
@data_option
@json_option
def status(name: str, data: Path | None, as_json: bool) -> None:
    """Show each host and whether its agent runs and answers."""
    statuses = cluster_status(_data_dir(name, data))
    if as_json:
        emit_json({"hosts": [s.to_json() for s in statuses]})
        return
    header = ("HOST", "ADDRESS", "SUBNET", "PID", "ALIVE", "HEALTHY")
    rows = [header, *_status_rows(statuses)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    if not all(s.healthy for s in statuses):
        raise click.exceptions.Exit(1)


@cluster.command()
@name_option
@data_option
@json_option
def down(name: str, data: Path | None, as_json: bool) -> None:
    """Stop the agents and remove every namespace, veth, bridge and table of the cluster."""
    directory = _data_dir(name, data)
    state = cluster_down(directory)
    if as_json:
        emit_json({"cluster": name, "removed": state is not None})
    elif state is None:
        click.echo(f"no cluster in {directory}; nothing to do")
    else:
        click.echo(f"cluster {state.plan.name} is down")
