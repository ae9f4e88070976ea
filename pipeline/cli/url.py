"""``berth url APP ENV``: the entry address of an app in an environment."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.context import emit_json, json_option


@click.command()
@click.argument("app")
@click.argument("env")
@json_option
@with_client
def url(app: str, env: str, as_json: bool, client: APIClient) -> None:
    """Print the address clients reach APP in ENV at (its router)."""
    answer = client.get(f"/apps/{app}/environments/{env}/url")
    if as_json:
        emit_json(answer)
        return
    click.echo(answer["url"])
