"""Facts about this host that container specs and runtimes depend on.

These are the only reads of host state the runtime package makes for a spec; the pure
:func:`runners.runtime.spec.runtime_spec` receives their results as arguments.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

from runners.runtime.spec import HostLimits

CGROUP_ROOT = Path("/sys/fs/cgroup")
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


def remove_cgroup_tree(relative: str, root: Path = CGROUP_ROOT) -> list[str]:
    """Remove the cgroup ``relative`` and all below it, in every hierarchy, deepest first.

    Only empty cgroups can go (the kernel refuses one with processes); those left are
    returned, so that a caller can say which are still in use.
    """
    busy = []
    hierarchies = sorted(root.iterdir()) if root.is_dir() else []
    for hierarchy in hierarchies:
        top = hierarchy / relative.strip("/")
        if hierarchy.is_symlink() or not top.is_dir():
            continue  # cpu -> cpu,cpuacct and the like: the real one is visited too
        for directory, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:
                busy.append(f"{directory}: {exc.strerror}")
    return busy


def remove_empty_cgroup(relative: str, root: Path = CGROUP_ROOT) -> None:
    """Remove the cgroup ``relative`` in every hierarchy where it is empty (else keep it)."""
    hierarchies = sorted(root.iterdir()) if root.is_dir() else []
    for hierarchy in hierarchies:
        with contextlib.suppress(OSError):
            (hierarchy / relative.strip("/")).rmdir()
