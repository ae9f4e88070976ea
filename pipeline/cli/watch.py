"""``berth watch APP ENV``: follow a rollout live with a progress bar until it ends.

The bar is the new release's share of traffic; the line under it says the step and
the phase. It ends when the rollout finishes: exit 0 when the new release is stable,
1 when the rollout ended otherwise (aborted, rolled back).
"""

from __future__ import annotations

import time
from typing import Any

import click

from pipeline.cli.apiclient import APIClient, with_client
from pipeline.cli.status import rollout_text
from pipeline.errors import BerthError

POLL = 0.5


def _environment(client: APIClient, app: str, env: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/apps/{app}/environments/{env}")
    return answer


@click.command()
@click.argument("app")
@click.argument("env")
@click.option(
    "--timeout",
    type=click.FloatRange(1, 24 * 3600),
    default=3600.0,
    show_default=True,
    help="Give up watching after this many seconds (the rollout goes on).",
)
@with_client
def watch(app: str, env: str, timeout: float, client: APIClient) -> None:
    """Follow the rollout of APP in ENV until it ends."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    current = _environment(client, app, env)
    rollout = current["rollout"]
    if rollout is None:
        stable = current["stable"]
        click.echo(
            f"{app}/{env}: no rollout in progress; "
            + (f"release {stable['id']} is stable" if stable else "nothing runs there yet")
        )
        return
    target = rollout["to_release"]
    deadline = time.monotonic() + timeout
    console = Console(stderr=False, highlight=False)
    with Progress(
        TextColumn(f"{app}/{env} → release {target}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(rollout_text(rollout), total=100, completed=rollout["weight"])
        while rollout is not None:
            if time.monotonic() >= deadline:
                raise BerthError(
                    f"{app}/{env}: still rolling out after {timeout:g}s; "
                    f"run berth watch {app} {env} again or berth status {app}"
                )
            time.sleep(POLL)
            current = _environment(client, app, env)
            rollout = current["rollout"]
            if rollout is not None:
                progress.update(
                    task, completed=rollout["weight"], description=rollout_text(rollout)
                )
        stable = current["stable"]
        reached = stable is not None and stable["id"] == target
        progress.update(task, completed=100 if reached else 0,
                        description="done" if reached else "ended")  # fmt: skip
    if not reached:
        now = f"release {stable['id']}" if stable else "nothing"
        raise BerthError(f"{app}/{env}: the rollout of release {target} ended; {now} is stable")
    click.echo(f"{app}/{env}: release {target} is stable")
