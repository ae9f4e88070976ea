"""The ``berth`` entry point: help, exit codes, lazy imports, --json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.cli.main import COMMANDS, main

pytestmark = pytest.mark.unit


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: berth" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_unknown_option_is_a_usage_error() -> None:
    assert main(["version", "--no-such-flag"]) == 2


def test_version_json() -> None:
    result = run("version", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert set(data) >= {"berth", "python", "platform"}
    assert data["berth"].split(".")[0].isdigit()


def test_version_does_not_import_heavy_modules() -> None:
    # The CLI must start fast: the version command loads none of the heavy libraries.
    code = (
        "import sys; from pipeline.cli.main import main; main(['version']); "
        "heavy = [m for m in ('starlette', 'sqlalchemy', 'httpx', 'pydantic', 'rich', 'uvicorn', "
        "'git', 'pyroute2', 'apscheduler') if m in sys.modules]; "
        "print('HEAVY=' + ','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "HEAVY=\n" in result.stdout or result.stdout.rstrip().endswith("HEAVY=")
