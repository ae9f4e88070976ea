"""Build logs: one append-only file per build in the data directory.

A running build appends to its file; readers (the API, ``berth logs --follow``) read
from an offset and come back for more, so a log can be streamed while it grows and
survives a restart of the control plane. The writer holds an exclusive ``flock`` on
the file while it is open, so a follower can tell a finished log from one whose last
lines are still coming (a build is marked cancelled before its worker writes them).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

MAX_READ = 1 << 20


class BuildLogs:
    """The log files of every build, under ``root`` (``DATA/builds/logs``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, build_id: int) -> Path:
        """Where build ``build_id`` writes its log."""
        return self.root / f"{int(build_id)}.log"

    def open(self, build_id: int) -> BinaryIO:
        """The log of ``build_id`` opened for appending, unbuffered: every write is
        visible to readers at once (a retried build appends to the same file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        stream = open(self.path(build_id), "ab", buffering=0)  # noqa: SIM115 (returned open)
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        except BaseException:
            stream.close()
            raise
        return stream

    def writing(self, build_id: int) -> bool:
        """Whether a worker has the log of ``build_id`` open for writing right now."""
        try:
            with open(self.path(build_id), "rb") as stream:
                try:
                    fcntl.flock(stream.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                return False
        except FileNotFoundError:
            return False

    def read(self, build_id: int, offset: int = 0, limit: int = MAX_READ) -> bytes:
        """Up to ``limit`` bytes of the log from ``offset`` (empty if there is none yet)."""
        try:
            with open(self.path(build_id), "rb") as stream:
                stream.seek(max(0, offset))
                return stream.read(limit)
        except FileNotFoundError:
            return b""

    def size(self, build_id: int) -> int:
        """The log's length so far in bytes."""
        try:
            return os.stat(self.path(build_id)).st_size
        except FileNotFoundError:
            return 0
