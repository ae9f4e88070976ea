"""A control plane with the deploy endpoints, in-process under a real uvicorn server:
a real git repo, real builds into the embedded registry, releases that switch at once
(no hosts), gates as local processes against a real target app, Slack slash commands
and a notification webhook that records what it is sent."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.delivery import SwitchBackend
from pipeline.promote.gates import ProcessGateRunner
from pipeline.queue.builder import TreeImageBuilder
from pipeline.registry.api.app import RegistryAPI
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.server import ControlPlane, PlaneOptions, create_app, plane_from_settings
from pipeline.settings import Settings, load_settings, resolve_secrets
from pipeline.store import Release, Store
from runners.oci.client import RegistryClient
from tests.control.support import TOKEN_ENV, LiveServer, live_server
from tests.helpers.gitrepo import GitRepo
from tests.helpers.procs import free_port
from tests.promote.support import Behaviour, Recorder, recorder, serve_target

SLACK_SECRET = "slack-signing-secret-4d2a"
DB_PASSWORD = "db-password-value-77ab1c"
ENV = {
    **TOKEN_ENV,
    "BERTH_T_SLACK": SLACK_SECRET,
    "BERTH_T_DB": DB_PASSWORD,
}

CHAIN = """\
environments:
  - name: dev
    secrets: {DB_PASSWORD: {env: BERTH_T_DB}}
  - {name: functional-test, gate: functional}
  - {name: perf-test, gate: perf}
  - name: pre-prod
    gate: approval
    approval: {required: 1, approvers: [deployer, alice]}
  - name: prod
    gate: approval
    approval: {required: 2, approvers: [deployer, admin, alice]}
"""


def config_text(tmp_path: Path, port: int, repo_url: str, notify_url: str) -> str:
    """The service config of these tests: one app, the five environments, three tokens,
    Slack with two mapped users, one notification webhook."""
    return (
        f"data_dir: {tmp_path / 'data'}\n"
        f"listen: [127.0.0.1:{port}]\n"
        "cluster: {hosts: 1}\n"
        "apps:\n"
        "  - name: demo\n"
        f"    repo: {repo_url}\n"
        "    poll_interval: 1h\n"
        "    webhook: {provider: github, secret: {env: BERTH_T_HOOK}}\n"
        "api_tokens:\n"
        "  - {name: reader, token: {env: BERTH_T_READ}, scopes: [read]}\n"
        "  - {name: deployer, token: {env: BERTH_T_DEPLOY}, scopes: [deploy]}\n"
        "  - {name: admin, token: {env: BERTH_T_ADMIN}, scopes: [admin]}\n" + CHAIN + "chatops:\n"
        "  slack:\n"
        "    signing_secret: {env: BERTH_T_SLACK}\n"
        "    users: {U01ALICE: alice, U09MAL: mallory}\n"
        "  notifications:\n"
        "    - url: {env: BERTH_T_NOTIFY}\n"
        "      environments: [pre-prod, prod]\n"
    )


@dataclass
class Deploy:
    """One running control plane and what the test needs around it."""

    settings: Settings
    plane: ControlPlane
    server: LiveServer
    target: str
    target_behaviour: Behaviour
    notifications: Recorder
    repo: GitRepo

    @property
    def store(self) -> Store:
        return self.plane.store

    def release(self, number: int, spec: dict[str, object]) -> Release:
        """A release as a build records it (with its ``release.created`` event)."""
        commit = f"{number:040x}"
        with self.store.transaction() as tx:
            release, _ = tx.create_release("demo", commit, "sha256:" + f"{number:064x}", spec)
            tx.append_event(
                "berth", "release.created", source="system:builder", app="demo",
                release_id=release.id, detail={"commit": commit},
            )  # fmt: skip
        return release


@pytest.fixture
def deploy(tmp_path: Path, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deploy]:
    behaviour = Behaviour()
    with serve_target(behaviour) as target, recorder() as notify:
        env = {**ENV, "BERTH_T_NOTIFY": notify.url + "/notify"}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        port = free_port()
        path = tmp_path / "berth.yml"
        path.write_text(config_text(tmp_path, port, git_repo.url, notify.url + "/notify"))
        settings = load_settings(path)
        secrets = resolve_secrets(settings, env)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.open(settings.store_url)
        client = RegistryClient()
        urls = {("demo", e.name): target for e in settings.environments}
        plane = plane_from_settings(
            settings,
            secrets,
            store,
            version="test",
            listen=[("127.0.0.1", port)],
            registry=RegistryAPI(FilesystemRegistryStorage(settings.data_dir / "registry")),
            builder=TreeImageBuilder(client, workdir=settings.data_dir / "tree"),
            options=PlaneOptions(
                workers=1,
                graceful=10,
                poll=False,
                backend=SwitchBackend(store, urls),
                gate_runner=ProcessGateRunner(cwd=str(tmp_path)),
            ),
        )
        try:
            with live_server(create_app(plane), port) as server:
                yield Deploy(settings, plane, server, target, behaviour, notify, git_repo)
        finally:
            client.close()
            store.close()
