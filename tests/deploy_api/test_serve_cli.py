"""The deploy commands of the CLI against a real ``berth serve`` process: table and
--json output, exit codes, and a release recorded while the service was down entering
dev when it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store import Store
from tests.control.support import TOKEN_ENV, TOKENS
from tests.helpers.procs import ProcessLauncher, free_port, wait_for_port, wait_until

pytestmark = pytest.mark.integration

BERTH = str(Path(sys.executable).with_name("berth"))


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "berth.yml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"listen: [127.0.0.1:{port}]\n"
        "cluster: {hosts: 1}\n"
        "apps:\n"
        f"  - {{name: demo, path: {tmp_path / 'repo'}, poll_interval: 1h}}\n"
        "api_tokens:\n"
        "  - {name: reader, token: {env: BERTH_T_READ}, scopes: [read]}\n"
        "  - {name: deployer, token: {env: BERTH_T_DEPLOY}, scopes: [deploy]}\n"
        "environments:\n"
        "  - {name: dev, auto_promote: false}\n"
        "  - {name: staging}\n"
    )
    return path


def test_cli_commands_against_a_running_serve(tmp_path: Path, launcher: ProcessLauncher) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path / "repo")], check=True)
    port = free_port()
    config = _config(tmp_path, port)
    (tmp_path / "data").mkdir()
    # a release recorded while no control plane ran: serve sends it into dev on start
    with Store.open(f"sqlite:///{tmp_path / 'data' / 'berth.db'}") as store:
        store.upsert_app("demo", str(tmp_path / "repo"), "main")
        with store.transaction() as tx:
            release, _ = tx.create_release("demo", "a" * 40, "sha256:" + "b" * 64, {})
            tx.append_event("berth", "release.created", source="system:builder", app="demo",
                            release_id=release.id)  # fmt: skip
    env = {**os.environ, **TOKEN_ENV, "BERTH_SERVER": f"http://127.0.0.1:{port}"}
    argv = [BERTH, "serve", "--config", str(config), "--cluster-dir", str(tmp_path / "none")]
    serve = launcher.start(argv, env=env, name="serve")
    wait_for_port("127.0.0.1", port, proc=serve)

    def berth(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BERTH, *args], env={**env, "BERTH_TOKEN": TOKENS[token]},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def dev_runs() -> bool:
        done = berth("reader", "status", "--json")
        return done.returncode == 0 and json.loads(done.stdout)[0]["stable"] is not None

    wait_until(dev_runs, timeout=30)
    table = berth("reader", "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["APP", "ENV", "STABLE", "ROLLOUT", "GATE", "NOTES"]
    assert lines[1].split()[:4] == ["demo", "dev", str(release.id), "(aaaaaaaaaaaa)"]
    assert "release 1 waiting (promote by hand)" in lines[2]

    refused = berth("reader", "promote", "demo", "--to", "staging")
    assert refused.returncode == 1
    assert "403" in refused.stderr
    assert "this needs deploy" in refused.stderr

    locked = berth("deployer", "lock", "demo", "staging", "--reason", "release freeze")
    assert locked.returncode == 0, locked.stderr
    assert locked.stdout.strip() == "demo/staging locked by deployer: release freeze"
    blocked = berth("deployer", "promote", "demo", "--to", "staging")
    assert blocked.returncode == 1
    assert "locked by deployer" in blocked.stderr
    assert "release freeze" in blocked.stderr
    assert berth("deployer", "unlock", "demo", "staging").returncode == 0

    promoted = berth("deployer", "promote", "demo", "--to", "staging", "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["release"] == release.id
    history = berth("reader", "history", "demo", "staging", "--json")
    [entry] = json.loads(history.stdout)
    assert (entry["promoted_by"], entry["source"], entry["from_env"]) == (
        "deployer", "cli:deployer", "dev",
    )  # fmt: skip
    text = berth("reader", "history", "demo", "staging")
    assert text.stdout.splitlines()[1].split()[2:] == [
        "1", "aaaaaaaaaaaa", "dev", "deployer", "passed", "no", "gate",
    ]  # fmt: skip

    for args, message in (
        (("rollback", "demo", "staging"), "nothing ran there before"),
        (("abort", "demo", "staging"), "no rollout is in progress"),
        (("url", "demo", "staging"), "no entry address"),
        (("gate", "logs", "demo", "qa"), "no environment qa"),
        (("history", "nope", "dev"), "unknown app"),
    ):
        done = berth("deployer", *args)
        assert done.returncode == 1, (args, done.stdout)
        assert message in done.stderr, (args, done.stderr)
    usage = berth("deployer", "promote", "demo")
    assert usage.returncode == 2
    watched = berth("reader", "watch", "demo", "staging")
    assert watched.returncode == 0
    assert "no rollout in progress; release 1 is stable" in watched.stdout
    serve.terminate()
    assert serve.wait(timeout=60) == 0
