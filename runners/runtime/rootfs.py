"""Container root filesystems: an overlay of shared layer dirs under a private upper dir.

The layers of an image, unpacked once per host, are the read-only lower directories of
every container of the image; each container writes only into its own upper directory
(copy-on-write). ``lowerdir`` lists the topmost layer first.

The kernel reads mount options from a single page, so an image with many layers in
deep directories can overflow ``lowerdir``. Then each directory is opened and named
through ``/proc/self/fd/N``, which is short and needs neither a ``chdir`` (shared by
every thread of the agent) nor helper symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from runners.errors import RuntimeFailure, SubprocessError
from runners.runtime import syscalls

# overlayfs refuses more lower layers than this (OVL_MAX_STACK)
MAX_LAYERS = 500
_FORBIDDEN = (",", ":", "\\", "\n")


def overlay_options(lower_dirs: Sequence[str], upper: str, work: str) -> str:
    """The overlay mount option string; ``lower_dirs`` topmost first."""
    if not lower_dirs:
        raise RuntimeFailure("overlay root filesystem: at least one layer directory is needed")
    if len(lower_dirs) > MAX_LAYERS:
        raise RuntimeFailure(
            f"overlay root filesystem: {len(lower_dirs)} layers; overlayfs stacks at most"
            f" {MAX_LAYERS} (squash the image)"
        )
    for path in (*lower_dirs, upper, work):
        if any(ch in path for ch in _FORBIDDEN):
            raise RuntimeFailure(
                f"overlay root filesystem: path {path!r} contains one of , : \\ or a newline,"
                " which overlay mount options cannot carry; use a plainer state directory"
            )
    return f"lowerdir={':'.join(lower_dirs)},upperdir={upper},workdir={work}"


def mount_command(options: str, target: str) -> list[str]:
    """``mount(8)`` argv doing what :func:`mount_rootfs` does with one system call."""
    return ["mount", "-t", "overlay", "overlay", "-o", options, target]


def mount_rootfs(lower_dirs: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount the overlay of ``lower_dirs`` (topmost first) with ``upper`` at ``target``.

    ``upper`` and ``work`` must be empty or left by an earlier mount of the same
    container, on one file system; ``target`` must be an existing directory.
    """
    lowers = [str(path.resolve()) for path in lower_dirs]
    upper_s, work_s = str(upper.resolve()), str(work.resolve())
    options = overlay_options(lowers, upper_s, work_s)
    if len(options.encode()) < _page_size():
        _mount(options, target, ())
        return
    with _opened([*lowers, upper_s, work_s]) as fds:
        names = [f"/proc/self/fd/{fd}" for fd in fds]
        short = overlay_options(names[:-2], names[-2], names[-1])
        if len(short.encode()) >= _page_size():
            raise RuntimeFailure(
                f"overlay root filesystem at {target}: {len(lowers)} layers do not fit in one"
                " page of mount options even with short names; squash the image"
            )
        _mount(short, target, fds)


def unmount_rootfs(target: Path) -> None:
    """Unmount the root filesystem at ``target``; nothing happens if none is mounted."""
    if not syscalls.libc_available():
        _run(["umount", str(target)], ok_when_not_mounted=True)
        return
    try:
        syscalls.umount(str(target))
    except OSError as exc:
        if syscalls.is_not_mounted(exc):
            return
        if exc.errno != errno.EBUSY:
            raise RuntimeFailure(f"unmounting the root filesystem at {target}: {exc}") from exc
        # still in use (a process keeps a cwd there): detach now, the kernel frees it later
        try:
            syscalls.umount(str(target), syscalls.MNT_DETACH)
        except OSError as again:
            raise RuntimeFailure(f"unmounting the root filesystem at {target}: {again}") from again


def mounted_at(target: Path) -> bool:
    """True when something is mounted exactly at ``target`` in this mount namespace."""
    return fs_type_at(target) is not None


def fs_type_at(target: Path) -> str | None:
    """The type of the file system mounted exactly at ``target`` (the topmost), or None."""
    wanted = str(target.resolve())
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields, sep, rest = line.partition(" - ")
            parts = fields.split(" ")
            if sep and len(parts) > 4 and unescape_mount_field(parts[4]) == wanted:
                found = rest.split(" ", 1)[0]
    return found


def _mount(options: str, target: Path, fds: Sequence[int]) -> None:
    if not syscalls.libc_available():
        _run(mount_command(options, str(target)), pass_fds=fds)
        return
    try:
        syscalls.mount("overlay", str(target), "overlay", 0, options)
    except OSError as exc:
        raise RuntimeFailure(
            f"mounting the overlay root filesystem at {target} failed: {exc.strerror}"
            " (are the upper and work dirs on one file system and the work dir empty?"
            " the kernel log says more)"
        ) from exc


@contextlib.contextmanager
def _opened(paths: Sequence[str]) -> Iterator[list[int]]:
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def _run(
    argv: list[str], *, pass_fds: Sequence[int] = (), ok_when_not_mounted: bool = False
) -> None:
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, pass_fds=tuple(pass_fds)
    )
    if result.returncode == 0:
        return
    if ok_when_not_mounted and "not mounted" in result.stderr:
        return
    raise SubprocessError(argv, result.returncode, result.stderr)


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def unescape_mount_field(field: str) -> str:
    """A path as /proc/self/mounts and mountinfo write it, with its octal escapes undone."""
    # mountinfo writes space, tab, newline and backslash as octal escapes
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
