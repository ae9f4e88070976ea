"""``berth promote APP --to ENV``: move the release that passed the previous environment
(or ``--release R``) into ENV."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.context import emit_json, json_option


@click.command()
@click.argument("app")
@click.option("--to", "env", required=True, help="The environment to promote into.")
@click.option("--release", type=click.IntRange(1), default=None, help="Default: the candidate.")
@click.option("--force", is_flag=True, help="Skip the gate checks (admin scope; recorded).")
@json_option
@with_client
def promote(
    app: str, env: str, release: int | None, force: bool, as_json: bool, client: APIClient
) -> None:
    """Promote APP into ENV: the release that passed the environment before it, unless
    --release names another. A lock on ENV refuses it, forced or not."""
    body: dict[str, object] = {"force": force}
    if release is not None:
        body["release"] = release
    answer = client.post(f"/apps/{app}/environments/{env}/promote", body)
    if as_json:
        emit_json(answer)
        return
    click.echo(answer["message"])
    if answer["overridden"]:
        click.echo(f"  forced past: {', '.join(answer['overridden'])}")
