"""Registries for the client tests: Debian's docker-registry, berth's own, and a fake.

Real registries run as processes started by the ``launcher`` fixture (stopped by pid);
a missing binary fails the test rather than skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from runners.oci.auth import Credentials, CredentialStore
from runners.oci.client import RegistryClient, RegistryOptions
from runners.oci.reference import Reference
from tests.helpers.procs import ProcessLauncher, free_port, wait_for_port
from tests.oci.fakeregistry import FakeRegistry

# Registries a client test is run against; "berth" is the embedded registry.
REGISTRY_KINDS = ["docker-registry", "berth"]


@dataclass(frozen=True)
class RunningRegistry:
    """A registry process listening on ``host`` (``127.0.0.1:PORT``)."""

    kind: str
    host: str
    root: Path
    deletes: bool = True

    def ref(self, text: str) -> Reference:
        return Reference.parse(f"{self.host}/{text}")


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; apt-get install {package}", pytrace=False)
    return path


def make_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1: (ca, cert, key)."""
    openssl = need_tool("openssl", "openssl")
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=berth test CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", extensions],
        check=True, capture_output=True,
    )  # fmt: skip
    return ca, cert, key


def start_docker_registry(
    launcher: ProcessLauncher,
    directory: Path,
    *,
    users: dict[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> RunningRegistry:
    binary = need_tool("docker-registry", "docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log: {level: error}",
        f"storage: {{filesystem: {{rootdirectory: {directory / 'data'}}}, delete: {{enabled: true}}}}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if tls is not None:
        lines.append(f"  tls: {{certificate: {tls[0]}, key: {tls[1]}}}")
    if users:
        passwords = htpasswd_file(directory / "htpasswd", users)
        lines.append(f"auth: {{htpasswd: {{realm: berth-test, path: {passwords}}}}}")
    config = directory / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    proc = launcher.start([binary, "serve", str(config)], name="docker-registry")
    wait_for_port("127.0.0.1", port, proc=proc)
    return RunningRegistry("docker-registry", f"127.0.0.1:{port}", directory)


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    htpasswd = need_tool("htpasswd", "apache2-utils")
    entries = [
        subprocess.run(
            [htpasswd, "-Bbn", user, password], check=True, capture_output=True, text=True
        ).stdout.strip()
        for user, password in users.items()
    ]
    path.write_text("\n".join(entries) + "\n")
    return path


def start_berth_registry(
    launcher: ProcessLauncher, directory: Path, *, token_users: dict[str, str] | None = None
) -> RunningRegistry:
    """``berth registry serve``; with ``token_users`` it hands out bearer tokens."""
    (directory / "data").mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        sys.executable, "-m", "pipeline.cli.main", "registry", "serve",
        "--listen", f"127.0.0.1:{port}", "--root", str(directory / "data"),
    ]  # fmt: skip
    if token_users:
        passwords = htpasswd_file(directory / "htpasswd", token_users)
        argv += ["--auth", "token", "--htpasswd", str(passwords)]
    proc = launcher.start(argv, name="berth-registry")
    wait_for_port("127.0.0.1", port, proc=proc, timeout=30)
    return RunningRegistry("berth", f"127.0.0.1:{port}", directory)


@pytest.fixture(params=REGISTRY_KINDS)
def registry(
    request: pytest.FixtureRequest, launcher: ProcessLauncher, tmp_path: Path
) -> RunningRegistry:
    if request.param == "berth":
        return start_berth_registry(launcher, tmp_path / "registry")
    return start_docker_registry(launcher, tmp_path / "registry")


@pytest.fixture
def docker_registry(launcher: ProcessLauncher, tmp_path: Path) -> RunningRegistry:
    return start_docker_registry(launcher, tmp_path / "docker-registry")


USERS = {"alice": "s3cret-pass"}


@pytest.fixture
def auth_registry(launcher: ProcessLauncher, tmp_path: Path) -> RunningRegistry:
    return start_docker_registry(launcher, tmp_path / "auth-registry", users=USERS)


FAST = RegistryOptions(backoff=0.01, max_backoff=0.05, retries=3)


class ClientFactory(Protocol):
    def __call__(
        self,
        options: RegistryOptions = ...,
        credentials: dict[str, Credentials] | None = ...,
        docker_config: Path | None = ...,
    ) -> RegistryClient: ...


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """A factory of clients with quick back-off; every client is closed at teardown."""
    clients: list[RegistryClient] = []

    def factory(
        options: RegistryOptions = FAST,
        credentials: dict[str, Credentials] | None = None,
        docker_config: Path | None = None,
    ) -> RegistryClient:
        client = RegistryClient(options, CredentialStore(credentials, docker_config))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> RegistryClient:
    return make_client()


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry().start()
    yield server
    server.stop()
