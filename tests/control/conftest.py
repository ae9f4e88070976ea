"""A control plane in-process under a real uvicorn server, watching a real git repo."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from pipeline.queue.builder import BuildRequest, ImageBuilder, TreeImageBuilder
from pipeline.registry.api.app import RegistryAPI
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.server import ControlPlane, PlaneOptions, create_app, plane_from_settings
from pipeline.settings import Settings, load_settings, resolve_secrets
from pipeline.store import Build, BuildState, Store
from runners.oci.client import RegistryClient
from tests.control.support import TOKEN_ENV, LiveServer, live_server, service_config
from tests.helpers.gitrepo import GitRepo
from tests.helpers.procs import free_port, wait_until


class GatedBuilder:
    """An ImageBuilder that waits for ``gate`` before delegating: lets a test hold a
    build in ``running`` while it pushes more commits."""

    def __init__(self, inner: ImageBuilder) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.started = threading.Event()

    def build(self, request: BuildRequest, log: BinaryIO) -> str:
        self.started.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        return self.inner.build(request, log)


@dataclass
class Harness:
    repo: GitRepo
    settings: Settings
    plane: ControlPlane
    server: LiveServer
    client: RegistryClient

    @property
    def store(self) -> Store:
        return self.plane.store

    def builds(self) -> list[Build]:
        return self.store.list_builds("demo", limit=1000)

    def wait_finished(self, commit: str, timeout: float = 60) -> Build:
        def done() -> bool:
            build = self.store.find_build("demo", commit)
            return build is not None and build.state.finished

        wait_until(done, timeout=timeout)
        build = self.store.find_build("demo", commit)
        assert build is not None
        return build

    def wait_idle(self, timeout: float = 60) -> None:
        wait_until(
            lambda: (
                not any(b.state in (BuildState.QUEUED, BuildState.RUNNING) for b in self.builds())
            ),
            timeout=timeout,
        )


MakeHarness = Callable[..., Harness]


@pytest.fixture
def make_harness(
    tmp_path: Path, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeHarness]:
    for key, value in TOKEN_ENV.items():
        monkeypatch.setenv(key, value)
    stack: list[tuple[Store, RegistryClient, object]] = []
    contexts: list[object] = []

    def make(
        *,
        provider: str | None = "github",
        poll_interval: str = "1h",
        builder: Callable[[RegistryClient, Path], ImageBuilder] | None = None,
        options: PlaneOptions | None = None,
    ) -> Harness:
        port = free_port()
        config = service_config(
            tmp_path, port, git_repo.url, provider=provider, poll_interval=poll_interval
        )
        settings = load_settings(config)
        secrets = resolve_secrets(settings, dict(TOKEN_ENV))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.open(settings.store_url)
        client = RegistryClient()
        chosen = (
            builder(client, settings.data_dir)
            if builder
            else TreeImageBuilder(client, workdir=settings.data_dir / "tree")
        )
        plane = plane_from_settings(
            settings,
            secrets,
            store,
            version="test",
            listen=[("127.0.0.1", port)],
            registry=RegistryAPI(FilesystemRegistryStorage(settings.data_dir / "registry")),
            builder=chosen,
            options=options or PlaneOptions(workers=1, graceful=10, poll=provider is None),
        )
        context = live_server(create_app(plane), port)
        server = context.__enter__()
        contexts.append(context)
        stack.append((store, client, context))
        return Harness(git_repo, settings, plane, server, client)

    yield make
    for store, client, context in reversed(stack):
        context.__exit__(None, None, None)  # type: ignore[attr-defined]
        client.close()
        store.close()
