"""Fixtures of the registry tests: storage on ``tmp_path``, an in-process client, a real server."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline.registry.api import create_registry_app
from pipeline.registry.clock import ManualClock
from pipeline.registry.fs import FilesystemRegistryStorage
from tests.helpers.procs import ProcessLauncher, wait_for_port

with warnings.catch_warnings():
    # starlette's testclient touches an alias this anyio release deprecates, at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

BERTH = str(Path(sys.executable).with_name("berth"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def storage(tmp_path: Path, clock: ManualClock) -> FilesystemRegistryStorage:
    return FilesystemRegistryStorage(tmp_path / "registry", clock=clock, upload_ttl=600)


@pytest.fixture
def client(storage: FilesystemRegistryStorage) -> Iterator[TestClient]:
    with TestClient(create_registry_app(storage, sweep=False)) as test_client:
        yield test_client


@dataclass
class RegistryProcess:
    """A ``berth registry serve`` process on a loopback port."""

    url: str
    host_port: str
    root: Path
    pid: int

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)  # type: ignore[arg-type]


def start_registry(
    launcher: ProcessLauncher, root: Path, port: int, *extra: str
) -> RegistryProcess:
    argv = [
        BERTH,
        "registry",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--root",
        str(root),
        *extra,
    ]
    proc = launcher.start(argv, env={**os.environ}, name="registry")
    wait_for_port("127.0.0.1", port, proc=proc)
    return RegistryProcess(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", root, proc.pid)
