"""``kill -9`` of the real ``berth serve`` in the middle of a rollout resumes it.

The quick start's pieces, driven one by one: a simulated cluster whose agents trust the
embedded registry, the demo repository, the busybox base, the API token, then
``berth serve`` as a process. ``dev`` rolls out in three steps (50 %, an indefinite
pause, 100 %). While the second release is paused at 50 % the control plane is killed
with SIGKILL and started again with the same config: the rollout must still be paused at
the same step with exactly the same instances, and ``berth resume`` must complete it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pipeline.cli.apiclient import APIClient, Connection
from pipeline.cli.up import default_demo_dir, seed_repo, write_token_file
from pipeline.errors import APIError
from pipeline.rollout.instances import APP_LABEL, ENV_LABEL, RELEASE_LABEL
from runners.cluster import cluster_up, default_agent_argv
from runners.clusterstate import HostSpec, plan_cluster
from tests.helpers.hostnet import berth_tables, free_ranges
from tests.helpers.leaks import Snapshot
from tests.helpers.procs import ProcessLauncher, free_port, wait_until

pytestmark = [pytest.mark.privileged, pytest.mark.integration, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
HOSTS = 3
REPLICAS = 2
STEPS: list[dict[str, Any]] = [{"set_weight": 50}, {"pause": {}}, {"set_weight": 100}]
FIRST_RELEASE_TIMEOUT = 150.0
PAUSE_TIMEOUT = 120.0
STANDBY_TIMEOUT = 90.0
"""berth serve keeps the old release parked for 30 s after a rollout (not configurable)."""
IDENTITY = ["-c", "user.name=berth test", "-c", "user.email=berth@localhost"]


def _berth(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli.main", *args]


@dataclass(frozen=True)
class Plane:
    """The test's config and where everything it makes lives."""

    config: Path
    data: Path
    server: str
    token: str

    @property
    def cluster_dir(self) -> Path:
        return self.data / "clusters" / "local"

    @property
    def cache_dir(self) -> Path:
        return self.data / "build-cache"

    @property
    def repo(self) -> Path:
        return self.data / "demo-repo"

    def serve_argv(self) -> list[str]:
        return _berth(
            "serve", "--config", str(self.config), "--cluster-dir", str(self.cluster_dir),
            "--cache-dir", str(self.cache_dir), "--graceful-timeout", "5",
        )  # fmt: skip

    def cli_env(self) -> dict[str, str]:
        return {**os.environ, "BERTH_SERVER": self.server, "BERTH_TOKEN": self.token}


def _config(root: Path, port: int) -> Path:
    """The repository's default config: one ``dev`` environment with an indefinite pause
    at 50 %, a short git poll, fewer hosts; everything under ``root``."""
    doc = yaml.safe_load((REPO / "config" / "berth.yml").read_text())
    dev = next(env for env in doc["environments"] if env["name"] == "dev")
    dev.update(replicas=REPLICAS, rollout={"steps": STEPS})
    doc["environments"] = [dev]
    doc["cluster"] = {"hosts": HOSTS}
    doc["data_dir"] = str(root / "var")
    doc["listen"] = [f"127.0.0.1:{port}"]
    doc["apps"][0].update(path=str(root / "var" / "demo-repo"), poll_interval="1s")
    doc["api_tokens"][0]["token"] = {"file": str(root / "var" / "api-token")}
    config = root / "berth.yml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


def _prepare(plane: Plane, name: str, link: str, pool: str) -> None:
    """What ``berth up`` does before it starts serve: hosts, repository, base image."""
    plan = plan_cluster(name, HOSTS, plane.cluster_dir, link=link, pool=pool)
    registry = f"{plan.gateway.ip}:{plane.server.rsplit(':', 1)[1]}"

    def agent_argv(host: HostSpec) -> list[str]:
        return [*default_agent_argv(host), "--insecure-registry", registry]

    cluster_up(plan, agent_argv=agent_argv, ready_timeout=60)
    seed_repo(default_demo_dir(), plane.repo)
    subprocess.run(
        _berth("image", "base", "busybox", "-t", "busybox", "--cache-dir", str(plane.cache_dir)),
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def plane(launcher: ProcessLauncher) -> Iterator[Plane]:
    """A prepared quick start without serve; at the end serve (by pid) and the cluster
    are stopped and nothing of ours may be left."""
    # not tmp_path: pytest's base directory is private, and the containers' unprivileged
    # root user must traverse the data directory to reach the image layers
    root = Path(tempfile.mkdtemp(prefix="berth-crash-"))
    os.chmod(root, 0o711)  # noqa: S103
    port = free_port()
    config = _config(root, port)
    token_file = root / "var" / "api-token"
    write_token_file(token_file)
    ours = Plane(config, root / "var", f"http://127.0.0.1:{port}", token_file.read_text().strip())
    link, pool = free_ranges()
    tables, before = berth_tables(), Snapshot.take()
    try:
        _prepare(ours, "c" + uuid.uuid4().hex[:6], link, pool)
        yield ours
    finally:
        launcher.stop_all()
        down = subprocess.run(
            _berth("down", "--config", str(config)), capture_output=True, text=True, timeout=180
        )
    assert down.returncode == 0, down.stdout + down.stderr
    left = {t for t in berth_tables() - tables if t.startswith("berth_rt_demo_")}
    assert not left, f"router tables left behind: {sorted(left)}"
    leaks = [p for p in Snapshot.take().leaks_since(before) if "berth-r" not in p]
    assert not leaks, "; ".join(leaks)
    shutil.rmtree(root)


# --- observing ---------------------------------------------------------------------------


def _status(plane: Plane) -> dict[str, Any] | None:
    """dev's status from the REST API; None while serve does not answer."""
    try:
        with APIClient(Connection(plane.server, plane.token)) as client:
            status: dict[str, Any] = client.get("/apps/demo/environments/dev")
    except APIError:
        return None
    return status


def _wait_status(
    plane: Plane, serve: subprocess.Popen[bytes], launcher: ProcessLauncher, what: str,
    done: Any, timeout: float,
) -> dict[str, Any]:  # fmt: skip
    """Poll dev's status until ``done(status)``; fail with serve's log otherwise."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        assert serve.poll() is None, f"berth serve exited:\n{launcher.log_of(serve)[-3000:]}"
        last = _status(plane)
        if last is not None and done(last):
            return last
        time.sleep(0.5)
    raise AssertionError(
        f"dev never got {what} within {timeout:.0f}s (last status {last});"
        f" serve log:\n{launcher.log_of(serve)[-3000:]}"
    )


def _instances(plane: Plane) -> dict[str, tuple[int, bool]]:
    """dev's running instances on every host, from ``berth ps --host hN``:
    id -> (release, healthy)."""
    found: dict[str, tuple[int, bool]] = {}
    for index in range(1, HOSTS + 1):
        ps = subprocess.run(
            _berth("ps", "--host", f"h{index}", "--cluster-data", str(plane.cluster_dir), "--json"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ps.returncode == 0, ps.stdout + ps.stderr
        for item in yaml.safe_load(ps.stdout):
            labels = item.get("labels") or {}
            if labels.get(APP_LABEL) != "demo" or labels.get(ENV_LABEL) != "dev":
                continue
            assert item["id"] not in found, f"instance {item['id']} on two hosts"
            found[item["id"]] = (int(labels[RELEASE_LABEL]), item["health"] == "healthy")
    return found


def _per_release(instances: dict[str, tuple[int, bool]]) -> Counter[tuple[int, bool]]:
    return Counter(instances.values())


def _titles(url: str, count: int) -> Counter[str]:
    """The page titles of ``count`` requests, each on a new connection (the router
    chooses a version per connection)."""
    titles: Counter[str] = Counter()
    for _ in range(count):
        with httpx.Client(timeout=3.0, trust_env=False) as web:
            text = web.get(url + "/").text
        start, end = text.find("<title>"), text.find("</title>")
        titles[text[start + len("<title>") : end].strip() if 0 <= start < end else text[:40]] += 1
    return titles


def _commit_v2(repo: Path) -> None:
    page = repo / "www" / "index.html"
    page.write_text(page.read_text().replace("demo v1", "demo v2"))
    subprocess.run(
        ["git", *IDENTITY, "commit", "-q", "-am", "demo v2"], cwd=repo, check=True, timeout=30
    )


# --- the test ----------------------------------------------------------------------------


def _where(status: dict[str, Any]) -> dict[str, Any]:
    """Where dev's rollout stands: which one, phase, step, weights (not the last health
    observation, which the engine refreshes)."""
    rollout: dict[str, Any] = status["rollout"] or {}
    return {k: v for k, v in rollout.items() if k != "health"}


def _paused_at_50(status: dict[str, Any]) -> bool:
    rollout = status.get("rollout")
    return rollout is not None and rollout["phase"] == "paused" and rollout["weight"] == 50


def test_kill_9_of_serve_mid_rollout_resumes_it(plane: Plane, launcher: ProcessLauncher) -> None:
    serve = launcher.start(plane.serve_argv(), cwd=REPO, name="serve")
    first = _wait_status(
        plane, serve, launcher, "a first stable release",
        lambda s: s.get("stable") is not None and s.get("rollout") is None and s.get("url"),
        FIRST_RELEASE_TIMEOUT,
    )  # fmt: skip
    v1, url = int(first["stable"]["id"]), str(first["url"])
    wait_until(lambda: _per_release(_instances(plane)) == {(v1, True): REPLICAS}, timeout=30)
    assert _titles(url, 10) == Counter({"demo v1": 10})

    _commit_v2(plane.repo)
    paused = _wait_status(plane, serve, launcher, "paused at 50 %", _paused_at_50, PAUSE_TIMEOUT)
    rollout = _where(paused)
    v2 = int(rollout["to_release"])
    assert v2 != v1
    assert (rollout["step"], rollout["steps"], rollout["traffic"]) == (
        1, len(STEPS), {str(v1): 50, str(v2): 50},
    )  # fmt: skip
    # the stable release is held at full size (standby), the canary has ceil(2·50/100)
    expected = Counter({(v1, True): REPLICAS, (v2, True): 1})
    wait_until(lambda: _per_release(_instances(plane)) == expected, timeout=30)
    before = _instances(plane)

    launcher.kill(serve)
    assert serve.returncode == -9
    serve = launcher.start(plane.serve_argv(), cwd=REPO, name="serve")
    again = _wait_status(plane, serve, launcher, "an answer", lambda s: True, 60)
    assert _where(again) == rollout
    # the restarted engine has observed the hosts several times in this window: it must
    # neither start nor stop anything, nor move on past the indefinite pause
    for _ in range(8):
        time.sleep(1)
        assert _instances(plane) == before
    assert _where(_wait_status(plane, serve, launcher, "an answer", lambda s: True, 30)) == rollout

    resume = subprocess.run(
        _berth("resume", "demo", "dev"),
        capture_output=True,
        text=True,
        timeout=60,
        env=plane.cli_env(),
        cwd=REPO,
    )
    assert resume.returncode == 0, resume.stdout + resume.stderr
    done = _wait_status(
        plane, serve, launcher, f"release {v2} stable",
        lambda s: (s.get("stable") or {}).get("id") == v2 and s.get("rollout") is None,
        PAUSE_TIMEOUT,
    )  # fmt: skip
    assert done["url"] == url
    assert _titles(url, 20) == Counter({"demo v2": 20})
    # the old release stands by out of the router, then is stopped; the canary instance
    # started before the kill is one of the final two
    wait_until(
        lambda: _per_release(_instances(plane)) == {(v2, True): REPLICAS},
        timeout=STANDBY_TIMEOUT,
        interval=1.0,
    )
    final = _instances(plane)
    assert {i for i, (release, _) in before.items() if release == v2} <= set(final)
    assert _titles(url, 10) == Counter({"demo v2": 10})
