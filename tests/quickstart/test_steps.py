"""The pure and file-level parts of ``berth up``: what it prints, seeds and writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.cli.up import next_steps, seed_repo, write_token_file
from pipeline.errors import BerthError

pytestmark = pytest.mark.unit

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo"


def test_next_steps_names_the_dashboard_the_urls_and_the_commands(tmp_path: Path) -> None:
    text = next_steps(
        berth="berth",
        server="http://127.0.0.1:8420",
        token_file=tmp_path / "api-token",
        app="demo",
        repo=tmp_path / "repo",
        urls=[("dev", "http://10.240.0.254:80"), ("prod", None)],
        first="dev",
        later=["functional-test", "pre-prod", "prod"],
    )
    assert "Dashboard: http://127.0.0.1:8420/" in text
    assert "dev   http://10.240.0.254:80" in text
    assert "prod  (no release yet)" in text
    assert "export BERTH_SERVER=http://127.0.0.1:8420" in text
    assert f"export BERTH_TOKEN=$(cat {tmp_path / 'api-token'})" in text
    assert "berth promote demo --to functional-test" in text
    assert "berth approve demo pre-prod" in text
    assert "berth rollback demo dev" in text


def test_next_steps_without_a_token_says_nothing_of_one() -> None:
    text = next_steps(
        berth="/opt/berth/bin/berth",
        server="http://127.0.0.1:8420",
        token_file=None,
        app="demo",
        repo=None,
        urls=[("dev", None)],
        first="dev",
        later=[],
    )
    assert "BERTH_TOKEN" not in text
    assert "/opt/berth/bin/berth watch demo dev" in text
    assert "promote" not in text


def test_seed_repo_commits_the_demo_as_v1(tmp_path: Path) -> None:
    repo = tmp_path / "demo-repo"
    seed_repo(DEMO, repo)
    log = subprocess.run(
        ["git", "log", "--format=%s", "main"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert log.stdout.strip() == "demo v1"
    assert "demo v1" in (repo / "www" / "index.html").read_text()
    assert (repo / "berth.yml").is_file()


def test_seed_repo_refuses_a_directory_without_a_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BerthError, match="no demo app there"):
        seed_repo(tmp_path / "empty", tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_write_token_file_is_private_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "var" / "api-token"
    write_token_file(path)
    first = path.read_text()
    assert len(first.strip()) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_token_file(path)
    assert path.read_text() == first
