"""TLS: a registry with a certificate from a private CA, trusted only via ``ca_cert``."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.errors import RegistryError
from runners.oci.client import RegistryOptions
from runners.oci.layout import OCILayout
from tests.helpers.procs import ProcessLauncher
from tests.oci.conftest import ClientFactory, RunningRegistry, make_cert, start_docker_registry
from tests.oci.images import blob_digests, make_image

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_registry(launcher: ProcessLauncher, tmp_path: Path) -> tuple[RunningRegistry, Path]:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = make_cert(certs)
    return start_docker_registry(launcher, tmp_path / "tls-registry", tls=(cert, key)), ca


def test_private_ca_is_trusted_when_given(
    tls_registry: tuple[RunningRegistry, Path], make_client: ClientFactory, tmp_path: Path
) -> None:
    registry, ca = tls_registry
    client = make_client(RegistryOptions(ca_cert=ca, backoff=0.01))
    assert client.ping(registry.host) == "https"
    image = make_image(tmp_path / "src")
    client.push_image(image.layout, registry.ref("tls/app:v1"))
    out = OCILayout.create(tmp_path / "out")
    client.pull_image(registry.ref("tls/app:v1"), out)
    assert blob_digests(out) == blob_digests(image.layout)


def test_untrusted_certificate_is_an_error_not_a_fallback_to_http(
    tls_registry: tuple[RunningRegistry, Path], make_client: ClientFactory
) -> None:
    registry, _ = tls_registry
    client = make_client(RegistryOptions(backoff=0.01))
    with pytest.raises(RegistryError) as caught:
        client.list_tags(registry.ref("tls/app"))
    message = str(caught.value)
    assert f"TLS certificate of {registry.host} is not trusted" in message
    assert "--ca-cert FILE" in message


def test_verification_can_be_turned_off(
    tls_registry: tuple[RunningRegistry, Path], make_client: ClientFactory
) -> None:
    registry, _ = tls_registry
    client = make_client(RegistryOptions(tls_verify=False, backoff=0.01))
    assert client.ping(registry.host) == "https"


def test_plain_http_is_refused_for_hosts_not_allowed(
    docker_registry: RunningRegistry, make_client: ClientFactory
) -> None:
    strict = make_client(RegistryOptions(allow_loopback_http=False, backoff=0.01, retries=0))
    with pytest.raises(RegistryError, match=r"TLS handshake with .* failed .*--insecure"):
        strict.ping(docker_registry.host)
    allowed = make_client(
        RegistryOptions(
            allow_loopback_http=False,
            insecure_hosts=frozenset({docker_registry.host}),
            backoff=0.01,
        )
    )
    assert allowed.ping(docker_registry.host) == "http"


def test_unreadable_ca_file_is_reported(tmp_path: Path, make_client: ClientFactory) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(
        RegistryError, match=r"--ca-cert .*ca\.pem: cannot load a PEM CA certificate"
    ):
        make_client(RegistryOptions(ca_cert=bad))
