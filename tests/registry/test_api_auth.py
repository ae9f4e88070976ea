from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import jwt
import pytest

from pipeline.registry.access import parse_acl
from pipeline.registry.api import create_registry_app
from pipeline.registry.auth import BasicAuth, TokenAuth, TokenService
from pipeline.registry.clock import ManualClock
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.registry.htpasswd import Htpasswd
from pipeline.registry.tokens import TokenSigner
from tests.registry.conftest import TestClient
from tests.registry.support import basic, error_codes, push_blob, push_image

pytestmark = pytest.mark.unit

ACL = """
rules:
  - identity: ci
    repositories: ["**"]
    actions: [pull, push, delete, catalog]
  - identity: hosts
    repositories: ["apps/**"]
    actions: [pull]
  - identity: builder
    repositories: ["apps/*"]
    actions: [pull, push]
  - identity: anonymous
    repositories: ["public/**"]
    actions: [pull]
"""
PASSWORDS = {"ci": "ci-pw", "hosts": "hosts-pw", "builder": "builder-pw"}
KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def users(tmp_path: Path) -> Htpasswd:
    path = tmp_path / "htpasswd"
    lines = []
    for user, password in PASSWORDS.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{user}:$2y${hashed[4:]}")
    path.write_text("\n".join(lines) + "\n")
    return Htpasswd(path)


def creds(user: str) -> dict[str, str]:
    return basic(user, PASSWORDS[user])


@pytest.fixture
def basic_client(storage: FilesystemRegistryStorage, users: Htpasswd) -> Iterator[TestClient]:
    app = create_registry_app(storage, BasicAuth(users, parse_acl(ACL)), sweep=False)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def signer(clock: ManualClock) -> TokenSigner:
    return TokenSigner(KEY, service="berth", ttl=300, clock=clock)


@pytest.fixture
def token_client(
    storage: FilesystemRegistryStorage, users: Htpasswd, signer: TokenSigner
) -> Iterator[TestClient]:
    acl = parse_acl(ACL)
    app = create_registry_app(
        storage, TokenAuth(signer, acl), token_service=TokenService(signer, acl, users), sweep=False
    )
    with TestClient(app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fetch_token(client: TestClient, scope: str, user: str | None = None) -> str:
    response = client.get(
        "/token", params={"service": "berth", "scope": scope}, headers=creds(user) if user else None
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    return str(body["token"])


# -- Basic ------------------------------------------------------------------------------


def test_basic_challenge_without_credentials(basic_client: TestClient) -> None:
    response = basic_client.get("/v2/")
    assert response.status_code == 200  # anonymous may pull public/**, so /v2/ answers
    push = basic_client.post("/v2/apps/demo/blobs/uploads/")
    assert push.status_code == 401
    assert push.headers["WWW-Authenticate"] == 'Basic realm="berth"'
    assert error_codes(push) == ["UNAUTHORIZED"]
    assert push.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_basic_wrong_password_is_401(basic_client: TestClient) -> None:
    for headers in (
        basic("ci", "nope"),
        basic("nobody", "x"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Digest x"},
    ):
        response = basic_client.get("/v2/", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="berth"'


def test_basic_acl(basic_client: TestClient) -> None:
    digest, _ = push_image(basic_client, "apps/demo", "v1", headers=creds("ci"))
    assert (
        basic_client.get(f"/v2/apps/demo/manifests/{digest}", headers=creds("hosts")).status_code
        == 200
    )
    denied = basic_client.post("/v2/apps/demo/blobs/uploads/", headers=creds("hosts"))
    assert denied.status_code == 403
    assert error_codes(denied) == ["DENIED"]
    assert basic_client.get("/v2/_catalog", headers=creds("hosts")).status_code == 403
    assert basic_client.get("/v2/_catalog", headers=creds("ci")).json() == {
        "repositories": ["apps/demo"]
    }
    assert (
        basic_client.delete(
            f"/v2/apps/demo/manifests/{digest}", headers=creds("builder")
        ).status_code
        == 403
    )
    assert basic_client.get("/v2/secret/x/tags/list", headers=creds("hosts")).status_code == 403
    anonymous = basic_client.get("/v2/apps/demo/tags/list")
    assert anonymous.status_code == 401


def test_anonymous_pull_of_public_repositories(basic_client: TestClient) -> None:
    push_image(basic_client, "public/base", "v1", headers=creds("ci"))
    assert basic_client.get("/v2/public/base/manifests/v1").status_code == 200
    assert basic_client.post("/v2/public/base/blobs/uploads/").status_code == 401


def test_mount_needs_pull_on_the_source(basic_client: TestClient) -> None:
    digest = push_blob(basic_client, "private/base", b"layer", creds("ci"))
    response = basic_client.post(
        "/v2/apps/x/blobs/uploads/",
        params={"mount": digest, "from": "private/base"},
        headers=creds("builder"),
    )
    assert response.status_code == 202  # builder may not read private/base: a plain upload
    assert (
        basic_client.head(f"/v2/apps/x/blobs/{digest}", headers=creds("builder")).status_code == 404
    )
    push_blob(basic_client, "apps/y", b"layer", creds("ci"))
    mounted = basic_client.post(
        "/v2/apps/x/blobs/uploads/",
        params={"mount": digest, "from": "apps/y"},
        headers=creds("builder"),
    )
    assert mounted.status_code == 201


def test_no_anonymous_rules_means_v2_needs_credentials(
    storage: FilesystemRegistryStorage, users: Htpasswd
) -> None:
    acl = parse_acl("rules: [{identity: ci, repositories: ['**'], actions: ['*']}]")
    with TestClient(create_registry_app(storage, BasicAuth(users, acl), sweep=False)) as client:
        assert client.get("/v2/").status_code == 401
        assert client.get("/v2/", headers=creds("ci")).status_code == 200


# -- tokens -----------------------------------------------------------------------------


def test_bearer_challenge_points_to_the_token_endpoint(token_client: TestClient) -> None:
    response = token_client.get("/v2/")
    assert response.status_code == 401
    assert (
        response.headers["WWW-Authenticate"]
        == 'Bearer realm="http://testserver/token",service="berth"'
    )
    push = token_client.post("/v2/apps/demo/blobs/uploads/")
    assert push.status_code == 401
    assert push.headers["WWW-Authenticate"] == (
        'Bearer realm="http://testserver/token",service="berth",scope="repository:apps/demo:pull,push"'
    )


def test_token_flow_push_and_pull(token_client: TestClient) -> None:
    token = fetch_token(token_client, "repository:apps/demo:pull,push", "ci")
    assert token_client.get("/v2/", headers=bearer(token)).status_code == 200
    digest, _ = push_image(token_client, "apps/demo", "v1", headers=bearer(token))
    pull = fetch_token(token_client, "repository:apps/demo:pull", "hosts")
    assert (
        token_client.get(f"/v2/apps/demo/manifests/{digest}", headers=bearer(pull)).status_code
        == 200
    )


def test_token_grants_only_what_the_acl_allows(token_client: TestClient) -> None:
    token = fetch_token(token_client, "repository:apps/demo:pull,push", "hosts")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "hosts"
    assert claims["access"] == [{"type": "repository", "name": "apps/demo", "actions": ["pull"]}]
    denied = token_client.post("/v2/apps/demo/blobs/uploads/", headers=bearer(token))
    assert denied.status_code == 403
    assert error_codes(denied) == ["DENIED"]


def test_token_for_another_scope_asks_for_a_wider_token(token_client: TestClient) -> None:
    token = fetch_token(token_client, "repository:apps/demo:pull", "ci")
    response = token_client.post("/v2/apps/demo/blobs/uploads/", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_expired_token_is_401(token_client: TestClient, clock: ManualClock) -> None:
    token = fetch_token(token_client, "repository:apps/demo:pull", "ci")
    clock.advance(301 + 10)
    response = token_client.get("/v2/apps/demo/tags/list", headers=bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_forged_token_is_401(token_client: TestClient) -> None:
    token = fetch_token(token_client, "repository:apps/demo:pull", "hosts")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["access"][0]["actions"] = ["pull", "push"]
    forged = jwt.encode(claims, b"not the key but long enough 0123", algorithm="HS256")
    response = token_client.post("/v2/apps/demo/blobs/uploads/", headers=bearer(forged))
    assert response.status_code == 401
    header, _payload, signature = token.split(".")
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{header}.{tampered_payload}.{signature}"
    assert (
        token_client.post("/v2/apps/demo/blobs/uploads/", headers=bearer(tampered)).status_code
        == 401
    )
    assert token_client.get("/v2/", headers=bearer("garbage")).status_code == 401


def test_anonymous_token(token_client: TestClient) -> None:
    push_image(
        token_client,
        "public/base",
        "v1",
        headers=bearer(fetch_token(token_client, "repository:public/base:pull,push", "ci")),
    )
    anonymous = fetch_token(token_client, "repository:public/base:pull")
    assert (
        token_client.get("/v2/public/base/manifests/v1", headers=bearer(anonymous)).status_code
        == 200
    )
    nothing = fetch_token(token_client, "repository:apps/demo:pull")
    assert jwt.decode(nothing, options={"verify_signature": False})["access"] == []
    assert token_client.get("/v2/apps/demo/tags/list", headers=bearer(nothing)).status_code == 401


def test_token_endpoint_refusals(token_client: TestClient) -> None:
    wrong = token_client.get(
        "/token", params={"scope": "repository:a:pull"}, headers=basic("ci", "bad")
    )
    assert wrong.status_code == 401
    assert error_codes(wrong) == ["UNAUTHORIZED"]
    other = token_client.get("/token", params={"service": "elsewhere"}, headers=creds("ci"))
    assert other.status_code == 400


def test_token_by_oauth_form_post(token_client: TestClient) -> None:
    response = token_client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "ci",
            "password": "ci-pw",
            "scope": "registry:catalog:*",
            "service": "berth",
        },
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert token_client.get("/v2/_catalog", headers=bearer(token)).status_code == 200
    refused = token_client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": "x"}
    )
    assert refused.status_code == 400
