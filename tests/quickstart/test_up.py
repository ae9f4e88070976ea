"""``berth up`` and ``berth down`` end to end: the quick start on a real simulated cluster.

Each test copies ``config/berth.yml`` into ``tmp_path`` (its data directory, the demo
repository and the API token there, a free port) and runs ``berth up`` as a process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers.hostnet import berth_tables, free_ranges
from tests.helpers.leaks import Snapshot
from tests.helpers.procs import ProcessLauncher, free_port, wait_until

pytestmark = [pytest.mark.privileged, pytest.mark.integration, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT = 300


def _berth(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli.main", *args]


@dataclass(frozen=True)
class Quick:
    """The test's config, its cluster's name and ranges."""

    config: Path
    name: str
    link: str
    pool: str

    def up_args(self) -> list[str]:
        return _berth(
            "up", "--config", str(self.config), "--timeout", str(UP_TIMEOUT),
            "--cluster-name", self.name, "--subnet", self.link, "--container-subnet", self.pool,
        )  # fmt: skip


@pytest.fixture
def quick() -> Iterator[Quick]:
    """The repository's default config, with everything it makes in a new temp dir."""
    # not tmp_path: pytest's base directory is private, and the containers' unprivileged
    # root user must traverse the data directory to reach the image layers
    tmp_path = Path(tempfile.mkdtemp(prefix="berth-quickstart-"))
    os.chmod(tmp_path, 0o711)  # noqa: S103
    doc = yaml.safe_load((REPO / "config" / "berth.yml").read_text())
    doc["data_dir"] = str(tmp_path / "var")
    doc["listen"] = [f"127.0.0.1:{free_port()}"]
    doc["apps"][0]["path"] = str(tmp_path / "var" / "demo-repo")
    doc["api_tokens"][0]["token"] = {"file": str(tmp_path / "var" / "api-token")}
    config = tmp_path / "berth.yml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    link, pool = free_ranges()
    tables, before = berth_tables(), Snapshot.take()
    yield Quick(config, "q" + uuid.uuid4().hex[:6], link, pool)
    # whatever happened, leave nothing behind (berth down cleans up after a dead berth up)
    subprocess.run(_berth("down", "--config", str(config)), capture_output=True, timeout=180)
    # the demo's router tables (other tests running at once may have tables of their own)
    left = {t for t in berth_tables() - tables if t.startswith("berth_rt_demo_")}
    assert not left, f"berth up left nftables tables behind: {sorted(left)}"
    # like the no_leaks fixture, but only what is ours: other runs may share this machine
    leaks = [p for p in Snapshot.take().leaks_since(before) if "berth-r" not in p]
    assert not leaks, "; ".join(leaks)
    shutil.rmtree(tmp_path)


def _ours(quick: Quick) -> list[str]:
    """Namespaces, mounts and processes of this test's cluster still present."""
    found = [n for n in Snapshot.take().netns if n.startswith(f"berth-{quick.name}-")]
    root = str(quick.config.parent)
    found += [m for m in Snapshot.take().mounts if m.startswith(root)]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    found += [line for line in ps.stdout.splitlines() if root in line]
    return found


def test_up_until_the_demo_is_healthy_then_everything_stops(quick: Quick) -> None:
    quick_config = quick.config
    result = subprocess.run(
        [*quick.up_args(), "--exit-when-healthy"],
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT + 90,
        cwd=REPO,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    port = yaml.safe_load(quick_config.read_text())["listen"][0].rsplit(":", 1)[1]
    assert f"Dashboard: http://127.0.0.1:{port}/" in out
    # the demo answered through its dev entry with the page of its first version
    assert "demo answers in dev at http://" in out
    assert "demo v1" in out
    for command in ("watch demo dev", "promote demo --to functional-test", "rollback demo dev"):
        assert command in out
    assert "export BERTH_TOKEN=" in out
    token = quick_config.parent / "var" / "api-token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert (quick_config.parent / "var" / "demo-repo" / ".git").is_dir()
    assert "nothing is left running" in out
    assert not (quick_config.parent / "var" / "up.json").exists()
    assert _ours(quick) == []


def test_down_stops_a_running_up(quick: Quick, launcher: ProcessLauncher) -> None:
    quick_config = quick.config
    proc = launcher.start(quick.up_args(), cwd=REPO, name="berth-up")
    wait_until(
        lambda: "Stop everything" in launcher.log_of(proc) or proc.poll() is not None,
        timeout=UP_TIMEOUT,
        interval=0.5,
    )
    assert proc.poll() is None, launcher.log_of(proc)
    state = quick_config.parent / "var" / "up.json"
    assert state.is_file()

    down = subprocess.run(
        _berth("down", "--config", str(quick_config)), capture_output=True, text=True, timeout=180
    )

    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopping berth up (pid {proc.pid})" in down.stdout
    assert proc.wait(timeout=30) == 0
    log = launcher.log_of(proc)
    assert "stopped (SIGTERM); nothing is left running" in log
    assert not state.exists()
    assert _ours(quick) == []
