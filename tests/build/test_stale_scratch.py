"""A build killed mid-step leaves a scratch directory with a mounted overlay behind;
the next build (or the control plane's start) stops and removes it, and never touches
the scratch of a build that is still running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.build.cache import BuildCache
from runners.runtime.rootfs import mount_rootfs, mounted_at

pytestmark = pytest.mark.privileged


def _mounted_scratch(cache: BuildCache) -> tuple[Path, Path]:
    path = cache.scratch("run-")
    lower, upper, work, rootfs = (path / n for n in ("lower", "upper", "work", "rootfs"))
    for directory in (lower, upper, work, rootfs):
        directory.mkdir()
    (lower / "file").write_text("x")
    (path / "container.id").write_text("berth-build-000000000000")
    mount_rootfs([lower], upper, work, rootfs)
    return path, rootfs


DIES_MID_STEP = """
import sys
from pathlib import Path
from pipeline.build.cache import BuildCache
from runners.runtime.rootfs import mount_rootfs
cache = BuildCache(Path(sys.argv[1]))
path = cache.scratch("run-")
lower, upper, work, rootfs = (path / n for n in ("lower", "upper", "work", "rootfs"))
for directory in (lower, upper, work, rootfs):
    directory.mkdir()
(path / "container.id").write_text("berth-build-000000000000")
mount_rootfs([lower], upper, work, rootfs)
print(rootfs)
"""


def test_a_dead_builds_scratch_is_unmounted_and_removed(tmp_path: Path, no_leaks: None) -> None:
    # A real process makes a scratch dir, mounts its overlay and exits without cleaning
    # up, as a control plane killed with SIGKILL would: its lock dies, the mount stays.
    out = subprocess.run(
        [sys.executable, "-c", DIES_MID_STEP, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rootfs = Path(out.stdout.strip())
    assert mounted_at(rootfs)
    assert BuildCache(tmp_path).clean_stale_scratch() == 1
    assert not mounted_at(rootfs)
    assert not rootfs.parent.exists()


def test_a_living_builds_scratch_is_left_alone(tmp_path: Path) -> None:
    living = BuildCache(tmp_path)
    path, rootfs = _mounted_scratch(living)
    try:
        assert BuildCache(tmp_path).clean_stale_scratch() == 0
        assert mounted_at(rootfs)
        assert (path / "lower" / "file").read_text() == "x"
    finally:
        subprocess.run(["umount", str(rootfs)], check=True)
        living.release_scratch(path)
    assert not path.exists()
