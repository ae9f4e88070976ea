"""What every CLI command shares: options of the top-level group, output, error handling."""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import click

from pipeline.errors import BerthError
from runners.errors import RunnerError


@dataclass
class CLIContext:
    """Options of the top-level ``berth`` group, handed to every sub-command."""

    debug: bool = False
    log_format: str = "text"
    verbosity: int = 0

    def configure_logging(self) -> None:
        from pipeline.logs import configure_logging

        configure_logging(fmt=self.log_format, verbosity=self.verbosity, debug=self.debug)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout: the ``--json`` output of every command."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def json_option(func: Any) -> Any:
    """The ``--json`` flag, the same on every command that prints data."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def run_cli(group: click.Group, argv: list[str]) -> int:
    """Invoke ``group`` and turn every outcome into an exit code and a message."""
    debug = "--debug" in argv
    try:
        result = group.main(args=argv, prog_name="berth", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except (BerthError, RunnerError) as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except BrokenPipeError:
        return 1
    except Exception:
        click.echo("berth hit an internal error (a bug); details follow:", err=True)
        traceback.print_exc(file=sys.stderr)
        return 1
    # standalone_mode=False makes click return the code of a ctx.exit(n) instead of raising
    return result if isinstance(result, int) else 0
