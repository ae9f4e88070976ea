"""Keeping the kernel's cgroup migration lock warm while containers start.

The runtime moves every container's first process into the container's cgroup, and a
move takes the kernel's global cgroup migration lock (``cgroup_threadgroup_rwsem``) for
writing. When nobody has taken it for a while, taking it waits for an RCU grace period
— 8 to 20 ms on these hosts, with the runtime blocked in the middle of the start. For
about a grace period after a writer left, the next one gets it at once.

So while starts are under way, :class:`MigrationLockWarmer` takes the lock every few
milliseconds on a thread of its own, by moving this process into the cgroup it is
already in (which changes nothing: the kernel finds the same cgroup and moves no task).
The agent begins when a request arrives, so the one grace period is waited alongside
the start's other work (namespace, bundle, supervisor) instead of inside the runtime.
A move of a warm lock costs tens of microseconds; nothing is written while no start is
under way. Where the cgroup file cannot be written (not root, a read-only cgroupfs) the
warmer turns itself off and starts are as they were.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from runners.runtime.host import CGROUP_ROOT

_log = logging.getLogger(__name__)
INTERVAL = 0.004  # well inside a grace period, so the lock never cools between moves


def own_procs_file(cgroup_text: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The ``cgroup.procs`` of the cgroup this process is in (pure but for existence checks).

    ``cgroup_text`` is ``/proc/self/cgroup``. The cgroup2 entry (``0::/path``) is
    preferred — mounted at ``root`` on a cgroup2 host, at ``root/unified`` on a hybrid
    one — then any cgroup v1 hierarchy mounted under ``root`` by its controllers' names.
    """
    candidates: list[Path] = []
    legacy: list[Path] = []
    for line in cgroup_text.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not number.isdigit() or not path.startswith("/"):
            continue
        relative = path.lstrip("/")
        if ".." in relative.split("/"):
            continue
        if number == "0" and not controllers:
            candidates += [root / relative, root / "unified" / relative]
        else:
            for name in (controllers, controllers.removeprefix("name=")):
                legacy.append(root / name / relative)
    for directory in candidates + legacy:
        procs = directory / "cgroup.procs"
        if procs.is_file():
            return procs
    return None


class MigrationLockWarmer:
    """Takes the cgroup migration lock every :data:`INTERVAL` s while someone is :meth:`active`.

    ``procs_file`` is looked up in ``/proc/self/cgroup`` before every move (an
    administrator may have moved the process since); tests pass a file of their own.
    """

    def __init__(self, procs_file: Path | None = None, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._fixed = procs_file
        self._changed = threading.Condition()
        self._users = 0
        self._thread: threading.Thread | None = None
        self.enabled = True
        self.moves = 0  # how many times the lock was taken (for tests and diagnostics)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Keep the lock warm until the block ends (blocks nest and overlap freely)."""
        with self._changed:
            self._users += 1
            if self.enabled and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(
                    target=self._run, name="cgroup-lock-warmer", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._users -= 1

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._users > 0)
            if not self._move():
                return
            with self._changed:
                # a new user wakes it early: a start just began, and a move now is its due
                self._changed.wait(self.interval)

    def _move(self) -> bool:
        """Move this process into its own cgroup once; False (and off for good) on failure."""
        try:
            procs = self._fixed or own_procs_file(Path("/proc/self/cgroup").read_text())
            if procs is None:
                raise FileNotFoundError("no cgroup of this process is mounted")
            fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            with self._changed:
                self.enabled = False
            _log.debug("cgroup migration lock warmer off: %s", exc)
            return False
        self.moves += 1
        return True
