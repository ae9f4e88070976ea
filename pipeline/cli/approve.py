"""``berth approve APP ENV``: approve the release running in an environment."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.context import emit_json, json_option


@click.command()
@click.argument("app")
@click.argument("env")
@click.option(
    "--release", type=click.IntRange(1), default=None, help="Refuse unless this release runs."
)
@click.option("--comment", default="", help="Recorded with the approval.")
@json_option
@with_client
def approve(
    app: str, env: str, release: int | None, comment: str, as_json: bool, client: APIClient
) -> None:
    """Approve the release of APP running in ENV (gate: approval). With enough
    approvals the gate passes and the release may move on."""
    body: dict[str, object] = {"comment": comment}
    if release is not None:
        body["release"] = release
    answer = client.post(f"/apps/{app}/environments/{env}/approve", body)
    if as_json:
        emit_json(answer)
        return
    click.echo(answer["message"])
