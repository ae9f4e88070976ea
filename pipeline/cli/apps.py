"""``berth apps``: the watched apps and their latest build and release."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.builds import table
from pipeline.cli.context import emit_json, json_option


@click.command()
@json_option
@with_client
def apps(as_json: bool, client: APIClient) -> None:
    """List the watched apps with their latest build and release."""
    found = client.get("/apps")["apps"]
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no apps: add some under apps: in the service config")
        return
    rows = []
    for app in found:
        build, release = app["latest_build"], app["latest_release"]
        rows.append(
            [
                app["name"],
                app["branch"],
                app["webhook"] or "poll",
                f"{build['ref']} {build['state']}" if build else "-",
                f"{release['id']} {release['commit'][:12]}" if release else "-",
                app["repo"],
            ]
        )
    table(["APP", "BRANCH", "TRIGGER", "LATEST BUILD", "LATEST RELEASE", "REPO"], rows)
