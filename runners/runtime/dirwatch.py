"""Waking up when a file appears in a directory (inotify), instead of polling for it.

A container start is over when the runtime writes ``container.pid`` (or the supervisor
``exit.json``) into the container's directory. Polling for that either wastes CPU (50
concurrent starts, each looking every millisecond) or adds up to a poll interval to
every start; :class:`DirWatch` sleeps in ``poll`` until the kernel reports a change
in the directory, or the timeout passes. Where inotify is unavailable it simply sleeps
the timeout, and the caller's own look at the files decides as before.

Closing an inotify descriptor waits for the kernel's notification machinery to quiesce
(an SRCU grace period: about 12 ms here), so descriptors are closed on a background
thread, off the start's path.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
import time
from pathlib import Path
from types import TracebackType

from runners.runtime import syscalls

# <sys/inotify.h>
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE


_to_close: queue.SimpleQueue[int] = queue.SimpleQueue()
_closer_lock = threading.Lock()
_closer: threading.Thread | None = None


def _close_later(fd: int) -> None:
    global _closer
    _to_close.put(fd)
    with _closer_lock:
        if _closer is None or not _closer.is_alive():
            _closer = threading.Thread(target=_close_forever, name="inotify-close", daemon=True)
            _closer.start()


def _close_forever() -> None:
    while True:
        fd = _to_close.get()
        with contextlib.suppress(OSError):
            os.close(fd)


class DirWatch:
    """Changes (files created, written and closed, renamed in) in one directory."""

    def __init__(self, directory: Path) -> None:
        self.fd = -1
        try:
            fd = syscalls.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        except OSError:
            return  # no libc, or out of inotify instances: fall back to sleeping
        try:
            syscalls.inotify_add_watch(fd, str(directory), _MASK)
        except OSError:
            os.close(fd)
            return
        self.fd = fd

    def wait(self, timeout: float) -> bool:
        """Sleep until something changed in the directory or ``timeout`` s passed.

        True when a change was reported (the events are consumed).
        """
        if self.fd < 0:
            if timeout > 0:
                time.sleep(timeout)
            return False
        poller = select.poll()  # not select(): an agent may hold more than 1024 fds
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return False
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self.fd >= 0:
            _close_later(self.fd)
            self.fd = -1

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
