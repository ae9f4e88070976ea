"""``berth releases APP``: an app's releases, newest first."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.builds import short_time, table
from pipeline.cli.context import emit_json, json_option


@click.command()
@click.argument("app")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@with_client
def releases(app: str, limit: int, as_json: bool, client: APIClient) -> None:
    """List the releases of APP (commit, image digest, author), newest first."""
    found = client.get(f"/apps/{app}/releases", limit=limit)["releases"]
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo(f"no releases of {app} yet")
        return
    table(
        ["RELEASE", "COMMIT", "DIGEST", "CREATED", "AUTHOR", "MESSAGE"],
        [
            [
                r["id"],
                r["commit"][:12],
                r["digest"][:19],
                short_time(r["created_at"]),
                r["author"].split(" <")[0],
                (r["message"].splitlines() or [""])[0][:50],
            ]
            for r in found
        ],
    )
