"""Fixtures every test package may use.

- ``git_repo``: a real bare origin + working clone in ``tmp_path``.
- ``port``: a free TCP port on 127.0.0.1.
- ``launcher``: starts processes and stops them by pid at teardown.
- ``no_leaks``: fails the test if it left a network namespace, mount or process behind.
- ``privileged`` marker: such tests need root; without it they *fail* (never skip).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gitrepo import GitRepo, make_repo
from tests.helpers.leaks import Snapshot
from tests.helpers.procs import ProcessLauncher, free_port


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return make_repo(tmp_path / "git")


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[ProcessLauncher]:
    logs = tmp_path / "proc-logs"
    logs.mkdir()
    proc_launcher = ProcessLauncher(log_dir=logs)
    try:
        yield proc_launcher
    finally:
        proc_launcher.stop_all()


@pytest.fixture
def no_leaks() -> Iterator[None]:
    before = Snapshot.take()
    yield
    problems = Snapshot.take().leaks_since(before)
    assert not problems, "; ".join(problems)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") and os.geteuid() != 0:
        pytest.fail(
            "this test needs root (namespaces, mounts, runc); run the suite as root", pytrace=False
        )
