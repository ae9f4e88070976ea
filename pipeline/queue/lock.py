"""One control plane per data directory: an exclusive ``flock`` held for its lifetime.

Crash recovery marks every running build interrupted at start; that is only right when
no other live process is running builds from the same data directory. The kernel drops
the lock when the holder dies, even by ``kill -9``, so a restart never waits for it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pipeline.errors import BerthError

LOCK_FILE = "serve.lock"


class DataDirLock:
    """An exclusive lock on ``DATA/serve.lock``; raises if another process holds it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BerthError(
                f"{self.path.parent}: another berth serve (pid {holder}) uses this data "
                "directory; stop it first or give this one its own data_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
