"""Paths confined to one directory tree: walked by file descriptor, never through a symlink.

Layer unpacking writes only through the helpers here. Each path component is opened
with ``O_NOFOLLOW`` relative to its parent's descriptor, so a symlink planted by an
earlier tar entry can never redirect a later write outside the tree, whatever the
symlink points at. Symlink *targets* are checked separately by :func:`escapes`, which
follows them the way a reader on the host would.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Sequence

from runners.errors import LayerError

# Linux's own limit on symlinks followed during one lookup.
MAX_SYMLINK_HOPS = 40

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def member_parts(name: str) -> tuple[str, ...]:
    """The components of a tar member name, relative to the layer root.

    ``./a//b/`` becomes ``("a", "b")`` and ``.`` becomes ``()``. Absolute names and
    names with a ``..`` component are refused: they address something outside the layer.
    """
    if name.startswith("/"):
        raise LayerError(f"layer entry {name!r}: absolute path refused (entries must be relative)")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"layer entry {name!r}: '..' component refused (it leaves the layer)")
    return parts


def display(parts: Sequence[str]) -> str:
    """How a confined path appears in messages."""
    return "/".join(parts) or "."


def open_dir(root_fd: int, parts: Sequence[str], *, entry: str) -> int:
    """Open the directory at ``parts`` below ``root_fd`` without following any symlink.

    Raises :class:`LayerError` naming ``entry`` when a component is a symlink or not a
    directory, and :class:`FileNotFoundError` when one is missing. The caller closes
    the returned descriptor.
    """
    return _walk(root_fd, parts, entry=entry, create=None)


def make_dirs(
    root_fd: int, parts: Sequence[str], *, entry: str, uid: int, gid: int, mode: int = 0o755
) -> int:
    """Like :func:`open_dir`, creating missing directories owned by ``uid:gid``."""
    return _walk(root_fd, parts, entry=entry, create=(uid, gid, mode))


def _walk(
    root_fd: int, parts: Sequence[str], *, entry: str, create: tuple[int, int, int] | None
) -> int:
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            next_fd = _open_child(fd, part, create)
            if next_fd < 0:
                kind = _kind_at(fd, part)
                raise LayerError(
                    f"layer entry {entry!r}: parent {display(parts[: i + 1])!r} is {kind},"
                    " not a directory; writing through it could leave the layer"
                )
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(fd: int, name: str, create: tuple[int, int, int] | None) -> int:
    """A descriptor of directory ``name`` in ``fd``; -1 when it is not a real directory."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return -1
        if exc.errno != errno.ENOENT or create is None:
            raise
    uid, gid, mode = create
    os.mkdir(name, 0o700, dir_fd=fd)
    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
    try:
        os.fchown(child, uid, gid)
        os.fchmod(child, mode)
    except BaseException:
        os.close(child)
        raise
    return child


def lstat_at(root_fd: int, parts: Sequence[str]) -> os.stat_result | None:
    """``lstat`` of ``parts`` below ``root_fd``; ``None`` when it or a parent is missing."""
    if not parts:
        return os.fstat(root_fd)
    try:
        parent = open_dir(root_fd, parts[:-1], entry=display(parts))
    except (FileNotFoundError, LayerError):
        return None
    try:
        return os.lstat(parts[-1], dir_fd=parent)
    except FileNotFoundError:
        return None
    finally:
        os.close(parent)


def readlink_at(root_fd: int, parts: Sequence[str]) -> str:
    """The target of the symlink at ``parts`` (its parents must be real directories)."""
    parent = open_dir(root_fd, parts[:-1], entry=display(parts))
    try:
        return os.readlink(parts[-1], dir_fd=parent)
    finally:
        os.close(parent)


def escapes(root_fd: int, link: Sequence[str], target: str) -> str | None:
    """Why following the symlink ``link -> target`` leaves the tree, or ``None`` if it stays.

    The target is resolved the way the container sees it: an absolute target starts at
    the tree's root. Symlinks met on the way are followed within the tree (so a chain
    ``a -> b/..`` with ``b -> ..`` is caught); a relative climb above the root escapes.
    """
    stack: list[str] = [] if target.startswith("/") else list(link[:-1])
    pending: deque[str] = deque(target.split("/"))
    hops = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return f"{target!r} climbs above the layer root"
            stack.pop()
            continue
        stack.append(part)
        info = lstat_at(root_fd, stack)
        if info is None or not stat.S_ISLNK(info.st_mode):
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            return f"{target!r} starts a chain of more than {MAX_SYMLINK_HOPS} symlinks"
        inner = readlink_at(root_fd, stack)
        stack.pop()
        if inner.startswith("/"):
            stack.clear()
        pending.extendleft(reversed(inner.split("/")))
    return None


def _kind_at(dir_fd: int, name: str) -> str:
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        return "unreadable"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file"
