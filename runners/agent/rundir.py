"""The agent's run-time state on a tmpfs of its own: ``<data>/run``.

A start writes a dozen small files and directories (the runtime spec, the ``/etc``
files, the start gate, pid files, the runtime's state) that nothing needs after a
reboot, since the containers are gone then too. On a journalling disk each of those
costs a quarter of a millisecond or more; on a tmpfs a few microseconds. So the agent
mounts one at ``<data>/run`` (``/run`` is not a tmpfs everywhere), reuses it when a
restarted agent finds it mounted, and unmounts it when it ends with no container left.
Where no tmpfs can be mounted the directory stays on disk, which only costs speed.

Laid out as::

    <data>/run/
        containers/<id>/   each container's state directory (:mod:`runners.runtime.bundle`)
        runtime/           the OCI runtime's ``--root``
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from runners.runtime import syscalls
from runners.runtime.rootfs import fs_type_at

_log = logging.getLogger(__name__)

# the state of a few thousand containers is a few tens of MiB; memory is only used as
# files are written
TMPFS_OPTIONS = "mode=0711,size=256m"
Mounter = Callable[[str, str], None]


def mount_tmpfs(target: str, options: str) -> None:
    syscalls.mount("tmpfs", target, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, options)


def prepare_run_dir(path: Path, mount: Mounter = mount_tmpfs) -> bool:
    """Make ``path`` a tmpfs unless it is one already; False when it stays on disk."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o711)  # noqa: S103 -- a shifted container root traverses it to its rootfs
    if fs_type_at(path) == "tmpfs":
        return True
    try:
        mount(str(path), TMPFS_OPTIONS)
    except OSError as exc:
        _log.warning(
            "%s: cannot mount a tmpfs (%s); run-time state stays on disk, which makes"
            " every start slower; run the agent as root to have one",
            path,
            exc.strerror or exc,
        )
        return False
    return True


def release_run_dir(path: Path) -> bool:
    """Unmount the tmpfs at ``path`` if no container's state is left in it; True if it did.

    Containers outlive the agent, so their state must too: with any container
    directory left, the tmpfs stays for the next agent to find.
    """
    if fs_type_at(path) != "tmpfs":
        return False
    containers = path / "containers"
    if containers.is_dir() and any(containers.iterdir()):
        return False
    try:
        syscalls.umount(str(path))
    except OSError as exc:
        _log.warning("%s: could not unmount the agent's tmpfs: %s", path, exc)
        return False
    return True
