"""``berth logs ID [--follow]``: the log of a build (``b-12``).

The id's form says whose log it is: ``b-<n>`` is a build; other ids are instances,
whose logs the hosts' agents keep (served once the API has instance endpoints).
"""

from __future__ import annotations

import re
import sys

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.builds import parse_build_id
from pipeline.cli.context import emit_json, json_option
from pipeline.errors import BerthError

_BUILD = re.compile(r"b-\d+|\d+")


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@click.command()
@click.argument("target")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the build ends.")
@json_option
@with_client
def logs(target: str, follow: bool, as_json: bool, client: APIClient) -> None:
    """Print the log of build TARGET (b-12); with --follow, stream it while it runs."""
    if not _BUILD.fullmatch(target):
        raise BerthError(
            f"{target!r}: not a build id (b-12); instance logs are not served by this "
            "control plane yet"
        )
    build_id = parse_build_id(target)
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
