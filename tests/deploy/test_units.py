"""The systemd units pass ``systemd-analyze verify`` (as installed, berth's path aside)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ("berth-serve.service", "berth-agent.service")
INSTALLED_BERTH = "/opt/berth/bin/berth"


@pytest.mark.parametrize("unit", UNITS)
def test_units_pass_systemd_analyze(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    # the unit as installed, except that berth is this environment's
    berth = Path(sys.executable).with_name("berth")
    copy = tmp_path / unit
    copy.write_text((DEPLOY / "systemd" / unit).read_text().replace(INSTALLED_BERTH, str(berth)))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if unit in line or "Unknown" in line or "Failed" in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not problems, result.stdout + result.stderr
