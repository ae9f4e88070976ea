"""Keeping the cgroup migration lock warm: finding this process's cgroup, and the warmer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from runners.runtime.migration import MigrationLockWarmer, own_procs_file
from tests.helpers.procs import wait_until


def _cgroup(root: Path, relative: str) -> Path:
    directory = root / relative
    directory.mkdir(parents=True)
    procs = directory / "cgroup.procs"
    procs.write_text("")
    return procs


@pytest.mark.unit
def test_cgroup2_is_preferred_on_a_cgroup2_host(tmp_path: Path) -> None:
    procs = _cgroup(tmp_path, "system.slice/berth.service")
    _cgroup(tmp_path, "pids/system.slice/berth.service")
    text = "0::/system.slice/berth.service\n"
    assert own_procs_file(text, tmp_path) == procs


@pytest.mark.unit
def test_cgroup2_beside_v1_controllers_is_under_unified(tmp_path: Path) -> None:
    procs = _cgroup(tmp_path, "unified/user.slice")
    text = "12:pids:/user.slice\n1:name=systemd:/user.slice\n0::/user.slice\n"
    assert own_procs_file(text, tmp_path) == procs


@pytest.mark.unit
def test_a_v1_hierarchy_is_found_by_its_controllers_or_its_name(tmp_path: Path) -> None:
    procs = _cgroup(tmp_path, "cpu,cpuacct/agents")
    assert own_procs_file("4:cpu,cpuacct:/agents\n", tmp_path) == procs
    named = _cgroup(tmp_path, "systemd/agents")
    assert own_procs_file("1:name=systemd:/agents\n", tmp_path) == named


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    [
        "",
        "0::/not-mounted\n",
        "garbage\n",
        "x::/a\n",
        "0::relative\n",
        "0::/../../etc\n",  # never outside the cgroup mounts
    ],
)
def test_nothing_usable_is_none(tmp_path: Path, text: str) -> None:
    _cgroup(tmp_path, "a")
    (tmp_path.parent / "etc").mkdir(exist_ok=True)
    (tmp_path.parent / "etc" / "cgroup.procs").write_text("")
    assert own_procs_file(text, tmp_path / "a") is None


@pytest.mark.unit
def test_the_warmer_moves_only_while_a_start_is_under_way(tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    warmer = MigrationLockWarmer(procs, interval=0.001)
    assert warmer.moves == 0
    with warmer.active():
        wait_until(lambda: warmer.moves >= 3, timeout=10)
        # nested and overlapping users keep it going; the last one out stops it
        with warmer.active():
            seen = warmer.moves
            wait_until(lambda: warmer.moves > seen, timeout=10)
    assert procs.read_text() == str(os.getpid())
    # the move under way when the block ended may still finish; then nothing more
    pause = threading.Event()
    last = -1
    for _ in range(500):
        if warmer.moves == last:
            break
        last = warmer.moves
        pause.wait(0.02)
    pause.wait(0.1)
    assert warmer.moves == last


@pytest.mark.unit
def test_a_warmer_that_cannot_write_turns_itself_off(tmp_path: Path) -> None:
    warmer = MigrationLockWarmer(tmp_path / "no-such-cgroup" / "cgroup.procs", interval=0.001)
    with warmer.active():
        wait_until(lambda: not warmer.enabled, timeout=10)
    with warmer.active():  # still usable, just without effect
        pass
    assert warmer.moves == 0
    assert not (tmp_path / "no-such-cgroup").exists()


@pytest.mark.privileged
def test_the_real_warmer_leaves_this_process_in_its_cgroup() -> None:
    before = Path("/proc/self/cgroup").read_text()
    assert own_procs_file(before) is not None
    warmer = MigrationLockWarmer(interval=0.001)
    with warmer.active():
        wait_until(lambda: warmer.moves >= 5 or not warmer.enabled, timeout=10)
    assert warmer.enabled
    assert Path("/proc/self/cgroup").read_text() == before
