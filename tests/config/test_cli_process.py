"""``berth config check`` as a real process: the entry point, exit codes and streams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def berth(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_quick_start_config_checks_clean() -> None:
    result = berth("config", "check", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config/berth.yml: valid\n")
    assert result.stderr == ""


def test_a_broken_config_exits_1_with_every_problem(tmp_path: Path) -> None:
    (tmp_path / "berth.yml").write_text(
        "cluster: {hosts: 2}\nenvironments:\n  - {name: dev, replicas: -1}\n  - {name: dev}\n"
        "apps: [{name: demo}]\n"
    )
    result = berth("config", "check", "berth.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "berth.yml: environments/0/replicas: must be at least 1 (got -1)",
        "berth.yml: apps/demo: needs repo: (a git URL) or path: (a local repository)",
        'berth.yml: environments/1/name: duplicate environment name "dev" (also '
        "environments/0); names must be unique",
        "error: 3 problems in berth.yml; fix them and run berth config check again",
    ]
