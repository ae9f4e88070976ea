"""Hiding the cgroup2 mount of a hybrid-cgroup host from one process.

crun refuses hosts where cgroup v1 controllers and cgroup2 (``/sys/fs/cgroup/unified``)
are mounted side by side. In a private mount namespace of its own, with that mount
detached, it works; the host's mounts are untouched. Only ``crun run`` needs it (state,
kill and delete work as they are). The container supervisor calls
:func:`hide_unified_cgroup` in its child between fork and exec, which costs a fraction of
a millisecond; as a command it replaces
``unshare -m --propagation private sh -c 'umount … && crun …'`` without a shell::

    python -m runners.runtime.hybrid COMMAND [ARG...]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from runners.runtime import syscalls
from runners.runtime.host import UNIFIED_CGROUP

MODULE = "runners.runtime.hybrid"


def hide_unified_cgroup() -> None:
    """Move this process into a private mount namespace without the cgroup2 mount.

    Meant for a single-threaded process (or a child between fork and exec): the mount
    namespace is per thread until the next exec.
    """
    syscalls.unshare(syscalls.CLONE_NEWNS)
    # private first, so the detach below does not propagate back to the host
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE, "")
    try:
        syscalls.umount(UNIFIED_CGROUP, syscalls.MNT_DETACH)
    except OSError as exc:
        if not syscalls.is_not_mounted(exc):
            raise


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        sys.stderr.write(f"usage: python -m {MODULE} COMMAND [ARG...]\n")
        return 2
    hide_unified_cgroup()
    os.execvp(command[0], command)  # noqa: S606 -- an argv, never a shell string


if __name__ == "__main__":
    sys.exit(main())
