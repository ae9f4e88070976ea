"""The few Linux system calls Python's ``os`` module lacks: mount, umount2, unshare, inotify.

They go through libc with ctypes so that mounting a root filesystem costs one system
call rather than a ``mount(8)`` process. libc is looked up on first use, never at import,
among the symbols the interpreter already has loaded (no ``ldconfig`` run, which
:func:`ctypes.util.find_library` would spawn: 5 ms on every container start).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

# <sys/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

# <sys/mount.h> umount2 flags
MNT_DETACH = 0x2

# <sched.h>
CLONE_NEWNS = 0x00020000


@functools.cache
def _libc() -> ctypes.CDLL:
    # the interpreter links libc: dlopen(NULL) finds its symbols without a search
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    libc.mount.restype = ctypes.c_int
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.umount2.restype = ctypes.c_int
    libc.unshare.argtypes = [ctypes.c_int]
    libc.unshare.restype = ctypes.c_int
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_init1.restype = ctypes.c_int
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_add_watch.restype = ctypes.c_int
    return libc


def libc_available() -> bool:
    """True when libc can be loaded (it cannot in a few exotic static environments)."""
    try:
        _libc()
    except OSError:
        return False
    return True


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str) -> None:
    """``mount(2)``; raises :class:`OSError` with the errno on failure."""
    _check(
        _libc().mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    """``umount2(2)``; raises :class:`OSError` with the errno on failure."""
    _check(_libc().umount2(target.encode(), flags), f"umount {target}")


def unshare(flags: int) -> None:
    """``unshare(2)`` for the calling thread's process."""
    _check(_libc().unshare(flags), "unshare")


def inotify_init1(flags: int) -> int:
    """``inotify_init1(2)``: a new inotify descriptor; raises :class:`OSError` on failure."""
    fd = int(_libc().inotify_init1(flags))
    _check(0 if fd >= 0 else -1, "inotify_init1")
    return fd


def inotify_add_watch(fd: int, path: str | bytes, mask: int) -> int:
    """``inotify_add_watch(2)``: watch ``path`` on ``fd``; raises :class:`OSError`."""
    watch = int(_libc().inotify_add_watch(fd, os.fsencode(path), mask))
    _check(0 if watch >= 0 else -1, f"inotify_add_watch {os.fsdecode(path)}")
    return watch


def is_not_mounted(exc: OSError) -> bool:
    """True when ``umount`` failed only because nothing is mounted there."""
    return exc.errno in (errno.EINVAL, errno.ENOENT)


# <malloc.h>
M_ARENA_MAX = -8


def limit_malloc_arenas(count: int) -> bool:
    """Let glibc's malloc use at most ``count`` arenas from now on; False where it cannot.

    glibc gives threads that allocate at the same time arenas of their own, up to eight
    per core, and keeps what they freed: a threaded server's resident memory grows with
    every burst of concurrent requests. Call before the threads start.
    """
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))
