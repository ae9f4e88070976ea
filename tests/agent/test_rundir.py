"""The agent's tmpfs for run-time state: mounted once, reused, released only when empty."""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.agent.rundir import fs_type_at, prepare_run_dir, release_run_dir
from runners.cluster import mounts_under

pytestmark = pytest.mark.privileged


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    try:
        yield tmp_path
    finally:
        for target in mounts_under(tmp_path):
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def _mounts_at(path: Path) -> int:
    wanted = str(path.resolve())
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return sum(1 for line in lines if line.split(" ")[4] == wanted)


def test_a_tmpfs_is_mounted_once_and_reused(base: Path) -> None:
    run = base / "data" / "run"
    assert fs_type_at(run) is None
    assert prepare_run_dir(run)
    assert fs_type_at(run) == "tmpfs"
    assert stat.S_IMODE(run.stat().st_mode) == 0o711
    (run / "containers" / "web-1").mkdir(parents=True)
    # a restarted agent finds it mounted and keeps what is in it
    assert prepare_run_dir(run)
    assert _mounts_at(run) == 1
    assert (run / "containers" / "web-1").is_dir()


def test_released_only_without_containers(base: Path) -> None:
    run = base / "run"
    prepare_run_dir(run)
    (run / "containers" / "web-1").mkdir(parents=True)
    assert not release_run_dir(run)  # a running container's state must outlive the agent
    assert fs_type_at(run) == "tmpfs"
    (run / "containers" / "web-1").rmdir()
    assert release_run_dir(run)
    assert fs_type_at(run) is None
    assert not release_run_dir(run)  # nothing mounted: nothing to do


def test_a_plain_directory_is_never_unmounted(base: Path) -> None:
    run = base / "run"
    run.mkdir()
    assert not release_run_dir(run)
    assert run.is_dir()


def test_without_a_tmpfs_the_directory_stays_on_disk(
    base: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(target: str, options: str) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), target)

    run = base / "run"
    with caplog.at_level(logging.WARNING, logger="runners.agent.rundir"):
        assert not prepare_run_dir(run, mount=refused)
    assert run.is_dir()
    assert fs_type_at(run) is None
    assert "cannot mount a tmpfs" in caplog.text
    assert "run the agent as root" in caplog.text


def test_the_type_is_read_for_paths_mountinfo_escapes(base: Path) -> None:
    run = base / "data dir\twith space" / "run"
    assert prepare_run_dir(run)
    assert fs_type_at(run) == "tmpfs"
    assert fs_type_at(run.parent) is None
    assert release_run_dir(run)
