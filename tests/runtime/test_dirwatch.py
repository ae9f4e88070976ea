"""DirWatch wakes a waiter when a file appears, and otherwise sleeps out its timeout."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from runners.runtime.dirwatch import DirWatch

pytestmark = pytest.mark.unit


def test_a_created_file_wakes_the_waiter(tmp_path: Path) -> None:
    with DirWatch(tmp_path) as changes:
        assert changes.fd >= 0
        assert changes.wait(0.01) is False  # nothing happened yet
        writer = threading.Timer(0.05, lambda: (tmp_path / "container.pid").write_text("42\n"))
        writer.start()
        try:
            # bounded: a missed event would return False after the timeout, not hang
            assert changes.wait(30) is True
        finally:
            writer.join()
        changes.wait(0)  # the write's later events (it was created, then closed)
        assert changes.wait(0) is False  # all consumed, and nothing else happened


def test_a_file_renamed_into_place_wakes_the_waiter(tmp_path: Path) -> None:
    staged = tmp_path.parent / f"{tmp_path.name}.staged"
    staged.write_text("{}")
    with DirWatch(tmp_path) as changes:
        os.replace(staged, tmp_path / "exit.json")
        assert changes.wait(30) is True


def test_a_missing_directory_falls_back_to_sleeping(tmp_path: Path) -> None:
    with DirWatch(tmp_path / "absent") as changes:
        assert changes.fd == -1
        assert changes.wait(0.01) is False
    changes.close()  # closing twice is harmless


def test_closed_watches_are_released_in_the_background(tmp_path: Path) -> None:
    watch = DirWatch(tmp_path)
    fd = watch.fd
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    watch.close()
    assert watch.fd == -1
    for _ in range(500):  # bounded: 5 s at most
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            break
        if target != "anon_inode:inotify":
            break  # closed, and the number already reused by another file
        time.sleep(0.01)
    else:
        raise AssertionError(f"inotify descriptor {fd} was never closed")
