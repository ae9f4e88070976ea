"""The start gate's hook script, run by /bin/sh as the runtime runs it."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.runtime.spec import gate_hook

pytestmark = pytest.mark.integration
STATE = b'{"ociVersion":"1.0", "id":"web-1", "pid":4242, "root":"/r", "bundle":"/b"}'


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The FIFO and a descriptor holding it open for writing, as the starter does."""
    fifo = tmp_path / "start.gate"
    os.mkfifo(fifo, 0o600)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        yield fifo, fd
    finally:
        os.close(fd)


def _hook(fifo: Path) -> subprocess.Popen[bytes]:
    hook = gate_hook(str(fifo))
    return subprocess.Popen(hook["args"], executable=hook["path"], stdin=subprocess.PIPE)


def test_the_hook_outlives_the_runtime_writing_its_state(gate: tuple[Path, int]) -> None:
    # "go" is there before the hook starts; the runtime writes the state only later
    # (crun: after forking the hook) and must never find the hook gone (SIGPIPE)
    fifo, fd = gate
    os.write(fd, b"go\n")
    with _hook(fifo) as hook:
        assert hook.stdin is not None
        settled = threading.Event()
        settled.wait(0.2)
        assert hook.poll() is None, "the hook exited before the runtime wrote its state"
        hook.stdin.write(STATE)
        hook.stdin.close()
        assert hook.wait(timeout=30) == 0


@pytest.mark.parametrize("word", [b"no\n", b"gone\n", b"\n"])
def test_any_other_word_fails_the_start(gate: tuple[Path, int], word: bytes) -> None:
    fifo, fd = gate
    os.write(fd, word)
    with _hook(fifo) as hook:
        assert hook.stdin is not None
        hook.stdin.write(STATE)
        hook.stdin.close()
        assert hook.wait(timeout=30) != 0


def test_a_starter_that_died_fails_the_start(tmp_path: Path) -> None:
    fifo = tmp_path / "start.gate"
    os.mkfifo(fifo, 0o600)
    with _hook(fifo) as hook:
        assert hook.stdin is not None
        hook.stdin.write(STATE)
        hook.stdin.close()
        # the starter opens the gate and dies without a word: end of file
        os.close(os.open(fifo, os.O_WRONLY))
        assert hook.wait(timeout=30) != 0
