"""``berth rollback``, ``abort``, ``resume`` and ``retry``: steer an environment's rollout."""

from __future__ import annotations

from typing import Any

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.context import emit_json, json_option
from pipeline.cli.status import rollout_text


def _report(answer: dict[str, Any], as_json: bool, done: str) -> None:
    if as_json:
        emit_json(answer)
        return
    stable = answer["stable"]
    now = f"release {stable['id']} stable" if stable else "nothing stable"
    click.echo(f"{answer['app']}/{answer['env']}: {done}; {now}; rollout: "
               f"{rollout_text(answer['rollout'])}")  # fmt: skip


@click.command()
@click.argument("app")
@click.argument("env")
@click.option("--to", "to", type=click.IntRange(1), default=None, help="A release that ran there.")
@json_option
@with_client
def rollback(app: str, env: str, to: int | None, as_json: bool, client: APIClient) -> None:
    """Return ENV of APP to its previous release (or --to) at once, without gates or
    pauses, and pin it so no automatic promotion replaces it."""
    body = {"to": to} if to is not None else {}
    answer = client.post(f"/apps/{app}/environments/{env}/rollback", body)
    _report(answer, as_json, "rolled back (pinned)")


def _command(verb: str, done: str, doc: str) -> click.Command:
    @click.command(name=verb, help=doc)
    @click.argument("app")
    @click.argument("env")
    @json_option
    @with_client
    def command(app: str, env: str, as_json: bool, client: APIClient) -> None:
        answer = client.post(f"/apps/{app}/environments/{env}/{verb}")
        _report(answer, as_json, done)

    return command


abort = _command(
    "abort", "rollout aborted", "Abort the rollout in ENV of APP: back to the stable release."
)
resume = _command("resume", "rollout resumed", "Continue the rollout in ENV of APP past a pause.")
retry = _command("retry", "rollout retried", "Start the aborted rollout in ENV of APP again.")
