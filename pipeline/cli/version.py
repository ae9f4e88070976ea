"""``berth version``."""

from __future__ import annotations

import platform
import shutil
import sys
from importlib import metadata

import click

from pipeline.cli.context import emit_json, json_option


def berth_version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version("berth")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


@click.command()
@json_option
@click.option(
    "--components", is_flag=True, help="Also show the tools berth drives (runc, nft, git)."
)
def version(as_json: bool, components: bool) -> None:
    """Show berth's version (and, with --components, what it runs on)."""
    info: dict[str, object] = {
        "berth": berth_version(),
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
    }
    if components:
        info["tools"] = {tool: shutil.which(tool) for tool in ("git", "runc", "crun", "nft")}
    if as_json:
        emit_json(info)
        return
    click.echo(f"berth {info['berth']} (python {info['python']}, {info['platform']})")
    if components:
        tools = info["tools"]
        assert isinstance(tools, dict)
        for tool, path in tools.items():
            click.echo(f"  {tool:<5} {path or 'not found'}")
