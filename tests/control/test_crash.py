"""``kill -9`` of a real ``berth serve`` during a build: the restarted service finishes the
story — the build is retried, never lost, never run by two processes at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pipeline.store import BuildState, Store
from tests.control.support import PUSH_PAYLOADS, TOKEN_ENV, TOKENS, service_config, signed
from tests.helpers.gitrepo import GitRepo
from tests.helpers.procs import ProcessLauncher, free_port, wait_for_port, wait_until

pytestmark = pytest.mark.privileged

BERTH = str(Path(sys.executable).with_name("berth"))
SLOW = "FROM busybox\nRUN sleep 3 && echo slow > /slow.txt\nCOPY index.html /index.html\n"


def _build(http: httpx.Client, build_id: int) -> dict[str, object]:
    answer = http.get(f"/api/v1/builds/{build_id}")
    assert answer.status_code == 200, answer.text
    data: dict[str, object] = answer.json()
    return data


def test_kill_9_during_a_build_then_restart_finishes_it(
    tmp_path: Path, git_repo: GitRepo, launcher: ProcessLauncher
) -> None:
    cache = tmp_path / "cache"
    subprocess.run(
        [BERTH, "image", "base", "busybox", "-t", "busybox", "--cache-dir", str(cache)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    config = service_config(tmp_path, port, git_repo.url)
    env = {**os.environ, **TOKEN_ENV, "BERTH_CACHE_DIR": str(cache)}
    argv = [BERTH, "serve", "--config", str(config), "--workers", "1"]
    first = launcher.start(argv, env=env, name="serve-first")
    wait_for_port("127.0.0.1", port, proc=first)

    sha = git_repo.commit({"Dockerfile": SLOW, "index.html": "slow\n"}, "slow build")
    body, headers = signed("github", PUSH_PAYLOADS["github"](git_repo.url, sha))
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as hooks:
        queued = hooks.post("/hooks/github", content=body, headers=headers)
    assert queued.status_code == 202, queued.text
    build_id = int(queued.json()["build"])

    auth = {"authorization": f"Bearer {TOKENS['reader']}"}
    with httpx.Client(base_url=base, timeout=30, headers=auth) as http:
        wait_until(lambda: _build(http, build_id)["state"] == "running", timeout=60)
        # the RUN step has started: its sleep is under way
        wait_until(lambda: b"running" in http.get(f"/api/v1/builds/{build_id}/logs").content)
    launcher.kill(first, signal.SIGKILL)

    with Store.open(f"sqlite:///{tmp_path / 'data' / 'berth.db'}") as store:
        assert store.get_build(build_id).state is BuildState.RUNNING  # as the crash left it

    second = launcher.start(argv, env=env, name="serve-second")
    wait_for_port("127.0.0.1", port, proc=second)
    with httpx.Client(base_url=base, timeout=30, headers=auth) as http:
        wait_until(lambda: _build(http, build_id)["state"] == "succeeded", timeout=120)
        builds = http.get("/api/v1/builds", params={"app": "demo"}).json()["builds"]
        releases = http.get("/api/v1/apps/demo/releases").json()["releases"]
        events = http.get("/api/v1/events", params={"app": "demo"}).json()["events"]
    assert [b["id"] for b in builds] == [build_id]
    assert [r["commit"] for r in releases] == [sha]
    actions = [e["action"] for e in events if e["env"] is None]  # not promotion's
    assert actions == ["build.queued", "build.retried", "build.succeeded", "release.created"]
    second.terminate()
    assert second.wait(timeout=60) == 0


def test_a_second_serve_on_the_same_data_dir_is_refused(
    tmp_path: Path, git_repo: GitRepo, launcher: ProcessLauncher
) -> None:
    port = free_port()
    config = service_config(tmp_path, port, git_repo.url)
    env = {**os.environ, **TOKEN_ENV}
    first = launcher.start([BERTH, "serve", "--config", str(config)], env=env, name="first")
    wait_for_port("127.0.0.1", port, proc=first)
    other = free_port()
    result = subprocess.run(
        [BERTH, "serve", "--config", str(config), "--listen", f"127.0.0.1:{other}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "another berth serve" in result.stderr
    assert f"pid {first.pid}" in result.stderr
