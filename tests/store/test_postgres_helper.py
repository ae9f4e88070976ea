"""The test helper that finds PostgreSQL: newest version wins, absence is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.postgres import PostgresUnavailable, find_bin_dir

pytestmark = pytest.mark.unit


def test_the_newest_installed_version_is_used(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16"):
        bin_dir = tmp_path / "postgresql" / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "initdb").touch()
    (tmp_path / "postgresql" / "17" / "bin").mkdir(parents=True)  # no initdb: not a server
    assert find_bin_dir(f"{tmp_path}/postgresql/*/bin") == tmp_path / "postgresql" / "16" / "bin"


def test_missing_binaries_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable, match="apt-get install -y postgresql"):
        find_bin_dir(f"{tmp_path}/postgresql/*/bin")
