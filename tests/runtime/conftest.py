"""Fixtures for runtime tests: a host directory containers can reach, a busybox layer,
and a factory of real runc containers that are always deleted and unmounted afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.runtime.layers import LayerStore
from runners.runtime.oci_runtime import RuntimeCommands
from runners.runtime.unpack import UnpackOptions
from tests.runtime.containers import APPLETS, SHIFT, Containers, containers_with
from tests.runtime.tars import busybox_layer


def _mounts_below(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        points = [line.split(" ")[4] for line in mountinfo]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


@pytest.fixture
def state_root() -> Iterator[Path]:
    """A fresh directory a user-namespaced container's root can traverse.

    pytest's ``tmp_path`` lives below a 0700 directory that the shifted container root
    may not enter, so this one is made in the system temp dir with mode 0711.
    """
    root = Path(tempfile.mkdtemp(prefix="berth-runtime-test-"))
    os.chmod(root, 0o711)  # noqa: S103 -- searchable, as the agent's state dir is
    try:
        yield root
    finally:
        # a failed test may leave mounts behind; never leave them on the machine
        for point in _mounts_below(root):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def busybox_tar() -> bytes:
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is needed for runtime tests"
    return busybox_layer(Path(busybox), APPLETS)


@pytest.fixture
def shifted_store(state_root: Path) -> LayerStore:
    return LayerStore(
        state_root / "store", UnpackOptions(uid_shift=SHIFT.host_uid, gid_shift=SHIFT.host_gid)
    )


@pytest.fixture
def containers(
    state_root: Path, shifted_store: LayerStore, busybox_tar: bytes
) -> Iterator[Containers]:
    commands = RuntimeCommands(root=str(state_root / "runc"))
    with containers_with(commands, state_root, shifted_store, busybox_tar) as made:
        yield made
