"""``berth run``, ``berth ps``, ``berth exec`` and instance logs: one host, like docker.

Every command talks to one agent, chosen by ``--host``:

- a path (``/var/lib/berth/agent/agent.sock``) or ``unix:PATH``: the agent's socket;
- ``tcp://ADDR:PORT`` or ``https://ADDR:PORT``: over TCP, with ``--token-file``;
- a name (``h3``): a host of the simulated cluster (``berth cluster up``), found in its
  host list (``--cluster``, ``--cluster-data``).

Without ``--host`` the local agent's socket is used (``$BERTH_AGENT`` overrides it).
:func:`show_instance_logs` is what ``berth logs INSTANCE`` calls.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.cli.context import emit_json, json_option
from pipeline.errors import BerthError

DEFAULT_SOCKET = "unix:/var/lib/berth/agent/agent.sock"
DEFAULT_CLUSTER = "local"
F = TypeVar("F", bound=Callable[..., Any])
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def resolve_host(
    host: str | None, token_file: Path | None, cluster: str, cluster_data: Path | None
) -> tuple[str, str | None]:
    """The agent address and token that ``--host`` (and friends) designate."""
    token = token_file.read_text().strip() if token_file else None
    if not host:
        return DEFAULT_SOCKET, token
    if host.startswith("/"):
        return f"unix:{host}", token
    if host.startswith(("unix:", "tcp://", "http://", "https://")):
        return host, token
    hosts_file = (cluster_data or Path("/var/lib/berth/clusters") / cluster) / "hosts.json"
    try:
        listing = json.loads(hosts_file.read_text())
    except FileNotFoundError:
        raise BerthError(
            f"--host {host!r}: not a socket path or URL, and there is no cluster host list at"
            f" {hosts_file} (start one with 'berth cluster up' or give --cluster-data)"
        ) from None
    for entry in listing.get("hosts", []):
        if entry.get("name") == host:
            socket_path = entry.get("unix_socket")
            if socket_path and Path(socket_path).exists():
                return f"unix:{socket_path}", None
            token_path = entry.get("token_file")
            found = Path(token_path).read_text().strip() if token_path else token
            return str(entry["agent_url"]), found
    names = ", ".join(str(e.get("name")) for e in listing.get("hosts", []))
    raise BerthError(f"--host {host!r}: no such host in {hosts_file} (hosts: {names or 'none'})")


def host_options(func: F) -> F:
    """``--host``, ``--token-file``, ``--cluster``, ``--cluster-data``."""
    func = click.option(
        "--cluster-data",
        type=click.Path(file_okay=False, path_type=Path),
        help="The cluster's directory [default: /var/lib/berth/clusters/CLUSTER].",
    )(func)
    func = click.option(
        "--cluster", default=DEFAULT_CLUSTER, show_default=True, help="Cluster of --host NAME."
    )(func)
    func = click.option(
        "--token-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Token of a tcp:// agent.",
    )(func)
    return click.option(
        "--host",
        envvar="BERTH_AGENT",
        help="Agent socket path, tcp://ADDR:PORT, or a cluster host name"
        f" [default: {DEFAULT_SOCKET.removeprefix('unix:')}].",
    )(func)


@contextmanager
def agent_client(
    host: str | None, token_file: Path | None, cluster: str, cluster_data: Path | None
) -> Iterator[Any]:
    from runners.agent.client import AgentClient

    address, token = resolve_host(host, token_file, cluster, cluster_data)
    client = AgentClient(address, token=token)
    try:
        yield client
    finally:
        client.close()


def parse_size(text: str) -> int:
    """``64m``, ``1g``, ``512k`` or bytes."""
    value = text.strip().lower().removesuffix("ib").removesuffix("i")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    number = value[: len(value) - len(unit)] if unit else value
    if not number.isdigit():
        raise click.BadParameter(f"{text!r}: use bytes or a number with k, m or g (e.g. 64m)")
    return int(number) * _UNITS[unit]


def build_spec(
    image: str,
    command: tuple[str, ...],
    *,
    env: tuple[str, ...] = (),
    publish: tuple[str, ...] = (),
    memory: str | None = None,
    cpus: float | None = None,
    restart: str = "no",
    labels: tuple[str, ...] = (),
    stop_timeout: float | None = None,
) -> dict[str, Any]:
    """The instance spec ``berth run`` sends (pure)."""
    spec: dict[str, Any] = {"image": image}
    if command:
        spec["command"] = list(command)
    if env:
        spec["env"] = dict(_pair(item, "-e/--env", "NAME=VALUE") for item in env)
    if labels:
        spec["labels"] = dict(_pair(item, "--label", "KEY=VALUE") for item in labels)
    ports = []
    for item in publish:
        host_port, sep, container = item.partition(":")
        container_port, _, protocol = container.partition("/")
        if not sep or not host_port.isdigit() or not container_port.isdigit():
            raise click.BadParameter(f"{item!r}: use HOSTPORT:CONTAINERPORT[/udp]", param_hint="-p")
        ports.append(
            {
                "host": int(host_port),
                "container": int(container_port),
                "protocol": protocol or "tcp",
            }
        )
    if ports:
        spec["ports"] = ports
    resources: dict[str, Any] = {}
    if memory:
        resources["memory_bytes"] = parse_size(memory)
    if cpus is not None:
        resources["cpus"] = cpus
    if resources:
        spec["resources"] = resources
    if restart != "no":
        spec["restart"] = {"policy": restart}
    if stop_timeout is not None:
        spec["stop_timeout"] = stop_timeout
    return spec


def _pair(item: str, option: str, form: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{item!r}: use {form}", param_hint=option)
    return key, value


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


# options end at IMAGE: everything after it is the command, as with docker run
@click.command(context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1)
@click.option("--name", help="Instance id (the container's hostname) [default: run-XXXXXX].")
@click.option("-e", "--env", multiple=True, metavar="NAME=VALUE")
@click.option(
    "-p",
    "--publish",
    multiple=True,
    metavar="HOSTPORT:PORT",
    help="Publish a port: HOSTPORT on every address of the host, 127.0.0.1 included, reaches the container's PORT.",
)
@click.option("-m", "--memory", help="Memory limit (64m, 1g).")
@click.option("--cpus", type=float, help="CPU limit (0.5 = half a CPU).")
@click.option("--restart", type=click.Choice(["no", "on-failure"]), default="no")
@click.option("--label", multiple=True, metavar="KEY=VALUE")
@click.option("--stop-timeout", type=float, help="Seconds between the stop signal and SIGKILL.")
@click.option("-d", "--detach", is_flag=True, help="Print the instance and return at once.")
@click.option("--rm", "remove", is_flag=True, help="Delete the instance when it exits.")
@host_options
@json_option
def run(
    image: str,
    command: tuple[str, ...],
    name: str | None,
    env: tuple[str, ...],
    publish: tuple[str, ...],
    memory: str | None,
    cpus: float | None,
    restart: str,
    label: tuple[str, ...],
    stop_timeout: float | None,
    detach: bool,
    remove: bool,
    host: str | None,
    token_file: Path | None,
    cluster: str,
    cluster_data: Path | None,
    as_json: bool,
) -> None:
    """Run IMAGE (with COMMAND) as one instance on one host, like docker run.

    Without --detach the instance's output is streamed until it exits, and berth exits
    with the container's exit code.
    """
    spec = build_spec(
        image, command, env=env, publish=publish, memory=memory, cpus=cpus,
        restart=restart, labels=label, stop_timeout=stop_timeout,
    )  # fmt: skip
    instance_id = name or f"run-{secrets.token_hex(3)}"
    with agent_client(host, token_file, cluster, cluster_data) as client:
        view = client.put_instance(instance_id, spec)
        if detach:
            if as_json:
                emit_json(view)
            else:
                click.echo(view["id"])
            return
        for chunk in client.follow_logs(instance_id):
            _write(chunk)
        final = _wait_exit(client, instance_id)
        if remove:
            client.delete_instance(instance_id)
        if as_json:
            emit_json(final)
    code = final.get("exit_code")
    if isinstance(code, int) and code != 0:
        click.get_current_context().exit(code)


def _wait_exit(client: Any, instance_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = client.instance(instance_id)
        if view["state"] in ("exited", "missing") or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Also instances that exited.")
@host_options
@json_option
def ps(
    show_all: bool,
    host: str | None,
    token_file: Path | None,
    cluster: str,
    cluster_data: Path | None,
    as_json: bool,
) -> None:
    """List the instances on a host: state, health, address, restarts."""
    with agent_client(host, token_file, cluster, cluster_data) as client:
        instances = client.instances()
    if not show_all:
        instances = [i for i in instances if i["state"] != "exited"]
    if as_json:
        emit_json(instances)
        return
    rows = [("ID", "STATE", "HEALTH", "ADDRESS", "RESTARTS", "EXIT", "IMAGE")]
    for item in instances:
        rows.append(
            (
                item["id"],
                item["state"],
                item["health"],
                item.get("address") or "-",
                str(item["restarts"]),
                "-" if item.get("exit_code") is None else str(item["exit_code"]),
                item.get("image") or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@click.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.argument("instance")
@click.argument("command", nargs=-1, required=True)
@click.option("--timeout", type=float, default=60.0, show_default=True)
@host_options
def exec_(
    instance: str,
    command: tuple[str, ...],
    timeout: float,
    host: str | None,
    token_file: Path | None,
    cluster: str,
    cluster_data: Path | None,
) -> None:
    """Run COMMAND inside INSTANCE's namespaces (nsenter); exit with its exit code."""
    with agent_client(host, token_file, cluster, cluster_data) as client:
        result = client.exec(instance, list(command), timeout=timeout)
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    sys.stdout.flush()
    code = int(result["exit_code"])
    if code:
        click.get_current_context().exit(code)


def show_instance_logs(
    instance: str,
    *,
    follow: bool = False,
    tail: int | None = None,
    host: str | None = None,
    token_file: Path | None = None,
    cluster: str = DEFAULT_CLUSTER,
    cluster_data: Path | None = None,
) -> None:
    """Print an instance's output (``berth logs INSTANCE``); with ``follow``, until it stops."""
    with agent_client(host, token_file, cluster, cluster_data) as client:
        if follow:
            for chunk in client.follow_logs(instance, tail=tail):
                _write(chunk)
        else:
            _write(client.logs(instance, tail=tail))
