"""``berth gate logs APP ENV [--release R]``: a gate run's result and output."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.builds import short_time
from pipeline.cli.context import emit_json, json_option


@click.group()
def gate() -> None:
    """Gates of environments: their results and output."""


@gate.command()
@click.argument("app")
@click.argument("env")
@click.option(
    "--release", type=click.IntRange(1), default=None, help="Default: the stable release."
)
@json_option
@with_client
def logs(app: str, env: str, release: int | None, as_json: bool, client: APIClient) -> None:
    """Show the latest gate result of APP's release in ENV and its (masked) output."""
    run = client.get(f"/apps/{app}/environments/{env}/gate", release=release)
    if as_json:
        emit_json(run)
        return
    click.echo(
        f"{app}/{env} release {run['release']}: {run['gate']} gate {run['status']} "
        f"at {short_time(run['at'])}" + (f" - {run['message']}" if run["message"] else "")
    )
    if run["output"]:
        click.echo(run["output"].rstrip("\n"))
