"""Sealed copies of the runtime's binary: made once, sealed, renewed when the file changes."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runners.runtime.sealed import SEALS, SealedBinaries

pytestmark = pytest.mark.integration


@pytest.fixture
def binaries() -> SealedBinaries:
    return SealedBinaries()


def _echo(tmp_path: Path) -> Path:
    """A binary of our own, so that it can be changed."""
    found = shutil.which("echo")
    assert found
    copy = tmp_path / "echo"
    shutil.copy2(found, copy)
    return copy


def test_a_copy_is_sealed_executable_and_kept(tmp_path: Path, binaries: SealedBinaries) -> None:
    source = _echo(tmp_path)
    copy = binaries.copy_of(str(source))
    assert copy is not None
    assert fcntl.fcntl(copy.fd, fcntl.F_GET_SEALS) == SEALS
    assert os.pread(copy.fd, source.stat().st_size + 1, 0) == source.read_bytes()
    done = subprocess.run(
        ["echo", "from the copy"],
        executable=copy.path,
        pass_fds=(copy.fd,),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "from the copy\n"
    assert binaries.copy_of(str(source)) is copy
    binaries.close()


def test_nobody_can_change_a_copy(tmp_path: Path, binaries: SealedBinaries) -> None:
    copy = binaries.copy_of(str(_echo(tmp_path)))
    assert copy is not None
    writable = os.open(copy.path, os.O_RDWR)
    try:
        for change in (
            lambda: os.pwrite(writable, b"\x7fELF-evil", 0),
            lambda: os.ftruncate(writable, 1),
            lambda: os.ftruncate(writable, 1 << 20),
            lambda: fcntl.fcntl(writable, fcntl.F_ADD_SEALS, 0),
        ):
            with pytest.raises(PermissionError) as raised:
                change()
            assert raised.value.errno == errno.EPERM
    finally:
        os.close(writable)
    binaries.close()


def test_a_changed_binary_is_copied_again(tmp_path: Path, binaries: SealedBinaries) -> None:
    source = _echo(tmp_path)
    first = binaries.copy_of(str(source))
    assert first is not None
    with source.open("ab") as grown:
        grown.write(b"\0" * 16)  # an upgrade, as far as the identity goes
    second = binaries.copy_of(str(source))
    assert second is not None
    assert second is not first
    assert os.fstat(second.fd).st_size == source.stat().st_size
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(first.fd)  # the old copy was closed
    binaries.close()


def test_a_command_that_is_not_there_has_no_copy(tmp_path: Path, binaries: SealedBinaries) -> None:
    assert binaries.copy_of(str(tmp_path / "no-such-runtime")) is None
    assert binaries.copy_of("no-such-runtime-anywhere-on-path") is None
    unreadable = tmp_path / "directory"
    unreadable.mkdir()
    assert binaries.copy_of(str(unreadable)) is None
