"""``berth builds [APP]``: recent builds, newest first (through the REST API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.context import emit_json, json_option
from pipeline.errors import BerthError

STATES = ("queued", "running", "succeeded", "failed", "skipped", "cancelled", "interrupted")


def parse_build_id(text: str) -> int:
    """``b-12`` or ``12`` -> 12."""
    digits = text.removeprefix("b-")
    if not digits.isdigit() or int(digits) < 1:
        raise BerthError(f"{text!r} is not a build id: build ids look like b-12")
    return int(digits)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print aligned columns (plain text, so it pipes well)."""
    cells = [
        [str(c) for c in headers],
        *[[("-" if c is None else str(c)) for c in r] for r in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def short_time(value: str | None) -> str:
    """``2024-05-01T10:11:12.123+00:00`` -> ``2024-05-01 10:11:12``."""
    return value[:19].replace("T", " ") if value else "-"


@click.command()
@click.argument("app", required=False)
@click.option("--state", type=click.Choice(STATES), default=None, help="Only builds in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@with_client
def builds(
    app: str | None, state: str | None, limit: int, as_json: bool, client: APIClient
) -> None:
    """List builds (of APP), newest first."""
    found = client.get("/builds", app=app, state=state, limit=limit)["builds"]
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no builds" + (f" of {app}" if app else ""))
        return
    table(
        ["BUILD", "APP", "COMMIT", "STATE", "CREATED", "DIGEST / REASON"],
        [
            [
                b["ref"],
                b["app"],
                b["commit"][:12],
                b["state"],
                short_time(b["created_at"]),
                b["digest"] or b["reason"][:60] or "-",
            ]
            for b in found
        ],
    )
