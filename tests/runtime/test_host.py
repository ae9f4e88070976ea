"""Host facts: rlimits and the cgroup layout crun cares about."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from runners.runtime.host import host_limits, is_hybrid_cgroup_host, remove_cgroup_tree

pytestmark = pytest.mark.unit

V1 = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
V2 = "35 25 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
ROOT = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"


def test_host_limits_are_this_process_limits() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = host_limits()
    assert limits.nofile_hard == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    assert limits.nofile_soft <= limits.nofile_hard
    if soft != resource.RLIM_INFINITY:
        assert limits.nofile_soft == soft


@pytest.mark.parametrize(
    ("lines", "hybrid"),
    [(ROOT + V1 + V2, True), (ROOT + V2, False), (ROOT + V1, False), (ROOT, False)],
)
def test_hybrid_detection(tmp_path: Path, lines: str, hybrid: bool) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(lines)
    assert is_hybrid_cgroup_host(mountinfo) is hybrid


def test_remove_cgroup_tree_removes_deepest_first_and_names_what_is_busy(tmp_path: Path) -> None:
    for hierarchy in ("memory", "pids"):
        (tmp_path / hierarchy / "berth" / "h1" / "web" / "inner").mkdir(parents=True)
    (tmp_path / "memory" / "berth" / "h2").mkdir()
    # a cgroup with processes cannot be removed; here a file stands in for them
    (tmp_path / "pids" / "berth" / "h1" / "web" / "cgroup.procs").write_text("42\n")
    (tmp_path / "cpu").symlink_to("memory")  # cpu -> cpu,cpuacct style alias: skipped
    busy = remove_cgroup_tree("/berth/h1", root=tmp_path)
    assert not (tmp_path / "memory" / "berth" / "h1").exists()
    assert (tmp_path / "memory" / "berth" / "h2").is_dir()  # another host's: untouched
    assert not (tmp_path / "pids" / "berth" / "h1" / "web" / "inner").exists()
    assert busy == [
        f"{tmp_path}/pids/berth/h1/web: Directory not empty",
        f"{tmp_path}/pids/berth/h1: Directory not empty",
    ]
    assert remove_cgroup_tree("/berth/absent", root=tmp_path) == []
