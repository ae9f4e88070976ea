"""Facts about this host that container specs and runtimes depend on.

These are the only reads of host state the runtime package makes for a spec; the pure
:func:`runners.runtime.spec.runtime_spec` receives their results as arguments.
"""

from __future__ import annotations

import resource
from pathlib import Path

from runners.runtime.spec import HostLimits

UNIFIED_CGROUP = "/sys/fs/cgroup/unified"


def host_limits() -> HostLimits:
    """The open-files limits of this process, which its containers cannot exceed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY:
        soft = hard
    return HostLimits(nofile_soft=soft, nofile_hard=hard)


def is_hybrid_cgroup_host(mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """True when cgroup v1 controllers are mounted and cgroup2 sits beside them.

    crun refuses such hosts unless the cgroup2 mount is hidden from it; see
    :mod:`runners.runtime.hybrid`.
    """
    v1 = v2 = False
    for line in mountinfo.read_text().splitlines():
        _, _, after = line.partition(" - ")
        fstype = after.split(" ", 1)[0]
        v1 = v1 or fstype == "cgroup"
        v2 = v2 or fstype == "cgroup2"
    return v1 and v2
