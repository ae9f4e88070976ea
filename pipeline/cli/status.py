"""``berth status [APP]``: every app in every environment, in chain order."""

from __future__ import annotations

from typing import Any

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.builds import table
from pipeline.cli.context import emit_json, json_option


def _release(ref: dict[str, Any] | None) -> str:
    return "-" if ref is None else f"{ref['id']} ({ref['commit'][:12]})"


def rollout_text(rollout: dict[str, Any] | None) -> str:
    """``release 7 → 50 % (step 3/5, progressing)`` or ``-``."""
    if rollout is None:
        return "-"
    step = f"step {rollout['step'] + 1}/{rollout['steps']}, " if rollout["steps"] else ""
    return f"release {rollout['to_release']} at {rollout['weight']} % ({step}{rollout['phase']})"


def _gate(row: dict[str, Any]) -> str:
    gate = row["gate"]
    if gate["kind"] == "none" or gate.get("status") is None:
        return str(gate["kind"])
    text = f"{gate['kind']}: {gate['status']}"
    approvals = row["approvals"]
    if approvals is not None:
        text += f" ({len(approvals['given'])}/{approvals['required']} approvals)"
    return text


def _notes(row: dict[str, Any]) -> str:
    notes = []
    if row["lock"]:
        notes.append(f"locked by {row['lock']['holder']}: {row['lock']['reason']}")
    if row["pinned"]:
        notes.append("pinned")
    if row["waiting"]:
        waiting = row["waiting"]
        notes.append(f"release {waiting['release']} waiting ({waiting['held']})")
    return "; ".join(notes)


@click.command()
@click.argument("app", required=False)
@json_option
@with_client
def status(app: str | None, as_json: bool, client: APIClient) -> None:
    """Show, for every app (or APP) and environment, the stable release, any rollout
    in progress, the gate, approvals, locks and what waits to come in."""
    rows = client.get("/status", app=app)["environments"]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no apps are watched")
        return
    table(
        ["APP", "ENV", "STABLE", "ROLLOUT", "GATE", "NOTES"],
        [
            [r["app"], r["env"], _release(r["stable"]), rollout_text(r["rollout"]), _gate(r),
             _notes(r)]
            for r in rows
        ],
    )  # fmt: skip
