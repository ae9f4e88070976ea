"""``berth logs ID [--follow]``: the log of a build (``b-12``) or of an instance.

The id's form says whose log it is: ``b-<n>`` (or bare digits) is a build, whose log
the control plane serves; any other id is an instance (instance ids never look like
build ids), whose output its host's agent keeps — ``--host`` says which agent, as for
``berth ps``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from pipeline.cli.apiclient import APIClient, api_options, client_from
from pipeline.cli.builds import parse_build_id
from pipeline.cli.containers import host_options, show_instance_logs
from pipeline.cli.context import emit_json, json_option
from pipeline.errors import BerthError
from runners.errors import RunnerError

_BUILD = re.compile(r"b-\d+|\d+")


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@click.command()
@click.argument("target")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until it ends.")
@click.option("--tail", type=int, help="Only the last N lines (instances).")
@json_option
@api_options
@host_options
def logs(
    target: str,
    follow: bool,
    tail: int | None,
    as_json: bool,
    server: str | None,
    token: str | None,
    cli_config: Path | None,
    host: str | None,
    token_file: Path | None,
    cluster: str,
    cluster_data: Path | None,
) -> None:
    """Print the log of build TARGET (b-12) or the output of instance TARGET.

    With --follow, stream it while the build runs or the instance lives.
    """
    if not _BUILD.fullmatch(target):
        try:
            show_instance_logs(
                target,
                follow=follow,
                tail=tail,
                host=host,
                token_file=token_file,
                cluster=cluster,
                cluster_data=cluster_data,
            )
        except (BerthError, RunnerError) as exc:
            raise BerthError(
                f"{target!r} is not a build id (b-12), so it was taken for an instance: {exc}"
            ) from exc
        return
    with client_from(server, token, cli_config) as client:
        _build_log(client, parse_build_id(target), follow, as_json)


def _build_log(client: APIClient, build_id: int, follow: bool, as_json: bool) -> None:
    path = f"/builds/{build_id}/logs"
    if as_json:
        build = client.get(f"/builds/{build_id}")
        text = client.get(path)
        emit_json({"build": build, "log": bytes(text).decode(errors="replace")})
        return
    if follow:
        for chunk in client.stream_text(path, follow=1):
            _write(chunk)
        return
    _write(bytes(client.get(path)))
