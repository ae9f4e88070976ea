"""An instance's output: the last lines of its capped log files, and following them.

The supervisor writes ``stdout.log`` and ``stderr.log`` and rotates each to ``NAME.1``
at its size cap, so the last lines may span both files. Following re-opens the file
when it was rotated (its inode changed) and stops when the caller says the container
is gone and nothing more arrived.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

STREAMS = ("stdout", "stderr")
_CHUNK = 1 << 16


def tail_lines(path: Path, count: int | None) -> list[bytes]:
    """The last ``count`` lines (all with ``None``) of ``path`` and its rotated ``.1``."""
    data = b""
    for part in (path.with_name(path.name + ".1"), path):
        try:
            data += part.read_bytes()
        except FileNotFoundError:
            continue
    lines = data.splitlines(keepends=True)
    return lines if count is None else lines[-count:] if count > 0 else []


class Follower:
    """Yields what is appended to a log file from ``offset`` on, across rotations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode: int | None = None
        self._offset = 0
        try:
            info = path.stat()
        except FileNotFoundError:
            return
        self._inode, self._offset = info.st_ino, info.st_size

    def read(self) -> bytes:
        """What arrived since the last call (empty when nothing did)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return b""
        data = b""
        if self._inode is not None and info.st_ino != self._inode:
            # rotated: finish the old file (now NAME.1), then start the new one at 0
            rotated = self.path.with_name(self.path.name + ".1")
            data += _read_from(rotated, self._offset)
            self._offset = 0
        self._inode = info.st_ino
        chunk = _read_from(self.path, self._offset)
        self._offset += len(chunk)
        return data + chunk


def follow(
    paths: list[Path],
    running: Callable[[], bool],
    *,
    interval: float = 0.1,
    max_seconds: float = 24 * 3600.0,
) -> Iterator[bytes]:
    """New output of ``paths`` as it comes, until ``running()`` is false and all is read."""
    followers = [Follower(path) for path in paths]
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        alive = running()
        got = False
        for follower in followers:
            data = follower.read()
            if data:
                got = True
                yield data
        if not alive and not got:
            return
        if not got:
            time.sleep(interval)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(_CHUNK * 16)
    except FileNotFoundError:
        return b""


def file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
