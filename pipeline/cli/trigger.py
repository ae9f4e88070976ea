"""``berth trigger APP [--commit SHA]``: build a commit now, without waiting for a push."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.context import emit_json, json_option


@click.command()
@click.argument("app")
@click.option("--commit", default=None, help="Full commit id (default: the branch head).")
@json_option
@with_client
def trigger(app: str, commit: str | None, as_json: bool, client: APIClient) -> None:
    """Queue a build of APP's branch head (or of --commit). A commit whose build failed
    is built again; a commit already built is left as it is."""
    body = {"commit": commit} if commit else {}
    answer = client.post(f"/apps/{app}/builds", body)
    if as_json:
        emit_json(answer)
        return
    build = answer["build"]
    verb = "queued" if answer["result"] == "queued" else "already built as"
    click.echo(f"{app}@{build['commit'][:12]}: {verb} {build['ref']} ({build['state']})")
    for skipped in answer["superseded"]:
        click.echo(f"  b-{skipped} skipped: superseded")
