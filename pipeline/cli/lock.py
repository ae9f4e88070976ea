"""``berth lock APP ENV --reason …`` and ``berth unlock APP ENV``: stop and allow
promotions into an environment."""

from __future__ import annotations

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.context import emit_json, json_option


@click.command()
@click.argument("app")
@click.argument("env")
@click.option("--reason", required=True, help="Why (shown in status and to who is refused).")
@json_option
@with_client
def lock(app: str, env: str, reason: str, as_json: bool, client: APIClient) -> None:
    """Lock ENV of APP: every promotion into it is refused until it is unlocked."""
    answer = client.post(f"/apps/{app}/environments/{env}/lock", {"reason": reason})
    if as_json:
        emit_json(answer)
        return
    held = answer["lock"]
    click.echo(f"{app}/{env} locked by {held['holder']}: {held['reason']}")


@click.command()
@click.argument("app")
@click.argument("env")
@click.option("--force", is_flag=True, help="Release someone else's lock (admin scope).")
@json_option
@with_client
def unlock(app: str, env: str, force: bool, as_json: bool, client: APIClient) -> None:
    """Unlock ENV of APP (your own lock; someone else's with --force)."""
    answer = client.post(f"/apps/{app}/environments/{env}/unlock", {"force": force})
    if as_json:
        emit_json(answer)
        return
    click.echo(f"{app}/{env} unlocked" if answer["changed"] else f"{app}/{env} was not locked")
