"""Host facts: rlimits and the cgroup layout crun cares about."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from runners.runtime.host import host_limits, is_hybrid_cgroup_host

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
