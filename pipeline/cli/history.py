"""``berth history APP ENV``: what ran in an environment, who promoted it, how it ended."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.builds import short_time, table
from pipeline.cli.context import emit_json, json_option


@click.command()
@click.argument("app")
@click.argument("env")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
@with_client
def history(app: str, env: str, limit: int, as_json: bool, client: APIClient) -> None:
    """List the releases promoted into ENV of APP, newest first."""
    entries = client.get(f"/apps/{app}/environments/{env}/history", limit=limit)["entries"]
    if as_json:
        emit_json(entries)
        return
    if not entries:
        click.echo(f"nothing ran in {env} of {app} yet")
        return
    table(
        ["AT", "RELEASE", "COMMIT", "FROM", "BY", "OUTCOME", "MESSAGE"],
        [
            [
                short_time(e["at"]),
                e["release"],
                (e["commit"] or "")[:12],
                e["from_env"],
                e["promoted_by"] + (" (forced)" if e["forced"] else ""),
                e["outcome"],
                e["message"][:60],
            ]
            for e in entries
        ],
    )
