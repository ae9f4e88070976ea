"""The CLI against a live control plane: apps, builds, logs, releases, trigger; server and
token from flags, environment or the CLI config file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.apiclient import resolve_connection
from tests.control.conftest import MakeHarness
from tests.control.support import TOKENS

pytestmark = pytest.mark.integration

BERTH = str(Path(sys.executable).with_name("berth"))


def berth(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BERTH, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_triggers_and_shows_builds_releases_and_logs(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    harness = make_harness()
    sha = harness.repo.commit({"index.html": "hi\n"}, "from the cli")
    home = tmp_path / "home"
    (home / ".config" / "berth").mkdir(parents=True)
    (home / ".config" / "berth" / "cli.yml").write_text(
        f"server: {harness.server.url}\ntoken: {TOKENS['deployer']}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": ""}
    triggered = berth("trigger", "demo", "--json", env=env)
    assert triggered.returncode == 0, triggered.stderr
    build = json.loads(triggered.stdout)["build"]
    assert build["commit"] == sha
    harness.wait_finished(sha)

    listed = berth("builds", "demo", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(build["ref"]))
    assert row.split()[:4] == [build["ref"], "demo", sha[:12], "succeeded"]
    releases = json.loads(berth("releases", "demo", "--json", env=env).stdout)
    assert [r["commit"] for r in releases] == [sha]
    apps = berth("apps", env=env)
    assert "demo" in apps.stdout
    assert "succeeded" in apps.stdout
    log = berth("logs", build["ref"], "--follow", env=env)
    assert log.returncode == 0
    assert "release 1 recorded" in log.stdout
    # flags beat the config file: a read token may not trigger
    refused = berth("trigger", "demo", "--token", TOKENS["reader"], env=env)
    assert refused.returncode == 1
    assert "403" in refused.stderr
    assert "deploy" in refused.stderr
    bad = berth("logs", "instance-7", env=env)
    assert bad.returncode == 1
    assert "not a build id" in bad.stderr


def test_connection_precedence(tmp_path: Path) -> None:
    config = tmp_path / "cli.yml"
    config.write_text("server: http://127.0.0.1:1\ntoken: from-file\n")
    env = {"BERTH_SERVER": "http://127.0.0.1:2", "HOME": str(tmp_path)}
    assert resolve_connection(None, None, config, env).server == "http://127.0.0.1:2"
    assert resolve_connection(None, None, config, env).token == "from-file"
    chosen = resolve_connection("http://127.0.0.1:3/", "flag", config, env)
    assert (chosen.server, chosen.token) == ("http://127.0.0.1:3", "flag")
    assert resolve_connection(None, None, tmp_path / "none.yml", {}).token is None
