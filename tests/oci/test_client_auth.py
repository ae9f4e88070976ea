"""Authentication against real servers: htpasswd Basic on docker-registry, Bearer tokens
on the fake registry's token server, credentials from a Docker config file."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.errors import RegistryAuthError
from runners.oci.auth import Credentials
from runners.oci.layout import OCILayout
from runners.oci.progress import BlobState
from tests.helpers.procs import ProcessLauncher
from tests.oci.conftest import USERS, ClientFactory, RunningRegistry, start_berth_registry
from tests.oci.fakeregistry import FakeRegistry
from tests.oci.images import blob_digests, make_image

pytestmark = pytest.mark.integration

ALICE = Credentials("alice", USERS["alice"])


def test_basic_auth_required(
    auth_registry: RunningRegistry, make_client: ClientFactory, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src")
    client = make_client()
    with pytest.raises(RegistryAuthError) as caught:
        client.push_image(image.layout, auth_registry.ref("app:v1"))
    message = str(caught.value)
    assert f"registry {auth_registry.host} requires authentication" in message
    assert "pass --creds USER:PASS or log in" in message


def test_basic_auth_wrong_password(
    auth_registry: RunningRegistry, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(credentials={auth_registry.host: Credentials("alice", "wrong")})
    with pytest.raises(RegistryAuthError, match="refused the credentials"):
        client.list_tags(auth_registry.ref("app"))


def test_basic_auth_push_and_pull(
    auth_registry: RunningRegistry, make_client: ClientFactory, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src")
    client = make_client(credentials={auth_registry.host: ALICE})
    ref = auth_registry.ref("team/app:v1")
    pushed = client.push_image(image.layout, ref)
    assert {b.state for b in pushed.blobs} == {BlobState.DONE}
    mounted = client.push_image(
        image.layout, auth_registry.ref("team/copy:v1"), mount_from=["team/app"]
    )
    assert {b.state for b in mounted.blobs} == {BlobState.MOUNTED}
    out = OCILayout.create(tmp_path / "out")
    assert client.pull_image(ref, out).digest == image.manifest.digest
    assert blob_digests(out) == blob_digests(image.layout)


def test_credentials_from_docker_config(
    auth_registry: RunningRegistry, make_client: ClientFactory, tmp_path: Path
) -> None:
    token = base64.b64encode(f"{ALICE.username}:{ALICE.password}".encode()).decode()
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {f"http://{auth_registry.host}": {"auth": token}}}))
    image = make_image(tmp_path / "src")
    client = make_client(docker_config=config)
    assert (
        client.push_image(image.layout, auth_registry.ref("cfg/app:v1")).digest
        == image.manifest.digest
    )


@pytest.fixture
def token_registry() -> Iterator[FakeRegistry]:
    server = FakeRegistry(bearer=True, users={"alice": "token-pass"}).start()
    yield server
    server.stop()


def test_bearer_tokens_are_fetched_once_per_scope(
    token_registry: FakeRegistry, make_client: ClientFactory, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src", "v1", [{"a": b"1"}, {"b": b"2"}, {"c": b"3"}, {"d": b"4"}])
    client = make_client(credentials={token_registry.host: Credentials("alice", "token-pass")})
    ref = token_registry.ref("team/app:v1")
    client.push_image(image.layout, ref)
    # Five blobs pushed four at a time, and the manifest: one token for pull+push.
    assert [q["scope"] for q in token_registry.token_requests] == [
        ["repository:team/app:pull,push"]
    ]
    assert token_registry.token_requests[0]["service"] == ["fake"]

    out = OCILayout.create(tmp_path / "out")
    client.pull_image(ref, out)
    client.list_tags(ref)
    assert [q["scope"] for q in token_registry.token_requests][1:] == [["repository:team/app:pull"]]
    assert blob_digests(out) == blob_digests(image.layout)
    # Every request but the first ping and the token calls carried a bearer token.
    v2 = [r for r in token_registry.requests if r.path.startswith("/v2/") and r.path != "/v2/"]
    assert v2
    assert all(r.headers.get("Authorization", "").startswith("Bearer token-") for r in v2)


def test_bearer_token_with_mount_covers_both_repositories(
    token_registry: FakeRegistry, make_client: ClientFactory, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "src")
    client = make_client(credentials={token_registry.host: Credentials("alice", "token-pass")})
    client.push_image(image.layout, token_registry.ref("base:v1"))
    result = client.push_image(image.layout, token_registry.ref("app:v1"), mount_from=["base"])
    assert {b.state for b in result.blobs} == {BlobState.MOUNTED}
    scopes = [q["scope"] for q in token_registry.token_requests]
    assert ["repository:app:pull,push", "repository:base:pull"] in scopes


def test_bearer_token_refused(token_registry: FakeRegistry, make_client: ClientFactory) -> None:
    client = make_client(credentials={token_registry.host: Credentials("alice", "nope")})
    with pytest.raises(RegistryAuthError, match=r"refused user 'alice' for repository:app:pull"):
        client.list_tags(token_registry.ref("app"))


def test_bearer_tokens_from_berths_registry(
    launcher: ProcessLauncher, make_client: ClientFactory, tmp_path: Path
) -> None:
    registry = start_berth_registry(launcher, tmp_path / "berth", token_users=USERS)
    image = make_image(tmp_path / "src")
    ref = registry.ref("team/app:v1")
    anonymous = make_client()
    with pytest.raises(RegistryAuthError, match="requires authentication"):
        anonymous.push_image(image.layout, ref)
    client = make_client(credentials={registry.host: ALICE})
    client.push_image(image.layout, ref)
    out = OCILayout.create(tmp_path / "out")
    assert client.pull_image(ref, out).digest == image.manifest.digest
    assert blob_digests(out) == blob_digests(image.layout)
    # one token for pushing, one for pulling, however many requests were made
    assert len(client.session.auth.cache) == 2
    assert client.session.auth.token_requests == 2
