"""The ``berth`` entry point.

Sub-commands live in their own modules and are imported only when invoked, so that
``berth version`` and ``berth --help`` start in a few tens of milliseconds: heavy
libraries (Starlette, SQLAlchemy, httpx, pydantic, Rich) load only for the commands
that use them.

Exit codes: 0 success, 1 a berth error (the message says what to do), 2 a usage error.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from pipeline.cli.context import CLIContext

# name -> ("module", "attribute", "one-line help").  The help is repeated here so that
# ``berth --help`` can list every command without importing any of them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "version": ("pipeline.cli.version", "version", "Show berth's version and its components'."),
    "config": ("pipeline.cli.config", "config", "Check service configs and app specs."),
    "serve": ("pipeline.cli.serve", "serve", "Run the control plane (API, registry, health)."),
    "registry": ("pipeline.cli.registry", "registry", "Run or maintain the embedded OCI registry."),
    "image": ("pipeline.cli.image", "image", "Push, pull, inspect and list images in registries."),
    "apps": ("pipeline.cli.apps", "apps", "List watched apps with their latest build and release."),
    "builds": ("pipeline.cli.builds", "builds", "List builds (of an app), newest first."),
    "logs": ("pipeline.cli.logs", "logs", "Show a build's log (--follow streams it)."),
    "releases": ("pipeline.cli.releases", "releases", "List an app's releases."),
    "trigger": ("pipeline.cli.trigger", "trigger", "Build an app's branch head (or a commit) now."),
    "cluster": ("pipeline.cli.cluster", "cluster", "Simulate container hosts in namespaces."),
    "build": (
        "pipeline.cli.build",
        "build",
        "Build a Dockerfile into a layered, reproducible image.",
    ),
    "cache": ("pipeline.cli.cache", "cache", "Inspect and prune the build cache."),
    "agent": ("pipeline.cli.agent", "agent", "Run this host's agent (containers, images)."),
    "run": ("pipeline.cli.containers", "run", "Run one container on one host, like docker run."),
    "ps": ("pipeline.cli.containers", "ps", "List a host's instances (containers)."),
    "exec": ("pipeline.cli.containers", "exec_", "Run a command inside a running instance."),
    "status": ("pipeline.cli.status", "status", "Show what runs in every environment."),
    "history": ("pipeline.cli.history", "history", "List what ran in an environment."),
    "promote": ("pipeline.cli.promote", "promote", "Promote a release into an environment."),
    "approve": (
        "pipeline.cli.approve",
        "approve",
        "Approve the release running in an environment.",
    ),
    "lock": ("pipeline.cli.lock", "lock", "Stop promotions into an environment."),
    "unlock": ("pipeline.cli.lock", "unlock", "Allow promotions into an environment again."),
    "gate": ("pipeline.cli.gate", "gate", "Show gate results and their output."),
    "rollback": ("pipeline.cli.rollout", "rollback", "Return an environment to its last release."),
    "abort": ("pipeline.cli.rollout", "abort", "Abort a rollout: back to the stable release."),
    "resume": ("pipeline.cli.rollout", "resume", "Continue a rollout past a pause."),
    "retry": ("pipeline.cli.rollout", "retry", "Start an aborted rollout again."),
    "url": ("pipeline.cli.url", "url", "Print an environment's entry address."),
    "watch": ("pipeline.cli.watch", "watch", "Follow a rollout live until it ends."),
    "up": ("pipeline.cli.up", "up", "Run the whole flow on this machine with a demo app."),
    "down": ("pipeline.cli.up", "down", "Stop what berth up started."),
    "docs": ("pipeline.cli.docs", "docs", "Generate the reference manual from schemas and CLI."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def __init__(self, *args: object, lazy: dict[str, tuple[str, str, str]], **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module_name, attribute, _ = self._lazy[cmd_name]
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self._lazy[name][2]) for name in sorted(self._lazy)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Format of log lines written to stderr.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str, verbose: int) -> None:
    """berth: push to git, get a layered image, roll it out environment by environment.

    Every command has --help. Commands that print data accept --json.
    """
    ctx.obj = CLIContext(debug=debug, log_format=log_format, verbosity=verbose)
    ctx.obj.configure_logging()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 berth error, 2 usage error)."""
    from pipeline.cli.context import run_cli

    return run_cli(cli, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
