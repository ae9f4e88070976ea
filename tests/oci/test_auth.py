"""Authentication pieces that need no server: challenges, Docker config, token cache."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from runners.errors import RegistryAuthError
from runners.oci.auth import (
    Challenge,
    Credentials,
    CredentialStore,
    TokenCache,
    credential_key,
    docker_config_path,
    load_docker_config,
    merge_scopes,
    parse_challenges,
)

pytestmark = pytest.mark.unit


def test_bearer_challenge_with_commas_inside_quotes() -> None:
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push"'
    )
    [challenge] = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.service == "registry.example.com"
    assert challenge.scopes == ("repository:team/app:pull,push",)


def test_several_challenges_and_unquoted_values() -> None:
    header = 'Basic realm="Registry Realm", Bearer realm=https://a.test/t , service=svc,scope="x:y:pull a:b:push"'
    basic, bearer = parse_challenges(header)
    assert basic == Challenge("basic", {"realm": "Registry Realm"})
    assert bearer.realm == "https://a.test/t"
    assert bearer.service == "svc"
    assert bearer.scopes == ("x:y:pull", "a:b:push")


def test_escaped_quotes_and_garbage_do_not_hang() -> None:
    [challenge] = parse_challenges(r'Basic realm="say \"hi\""')
    assert challenge.realm == 'say "hi"'
    assert parse_challenges("") == []
    assert [c.scheme for c in parse_challenges('"""" ;; Basic')] == ["basic"]


def test_credentials_parse_and_hide_the_password() -> None:
    creds = Credentials.parse("alice:pa:ss")
    assert (creds.username, creds.password) == ("alice", "pa:ss")
    assert "pa:ss" not in repr(creds)
    assert creds.basic_header() == "Basic " + base64.b64encode(b"alice:pa:ss").decode()
    with pytest.raises(RegistryAuthError, match="USER:PASSWORD"):
        Credentials.parse("alice")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("registry.example.com/some/path", "registry.example.com"),
    ],
)
def test_credential_keys(key: str, expected: str) -> None:
    assert credential_key(key) == expected


def write_config(path: Path, auths: dict[str, object]) -> Path:
    path.write_text(json.dumps({"auths": auths}))
    return path


def test_docker_config_auths(tmp_path: Path) -> None:
    token = base64.b64encode(b"bob:hunter2:x").decode()
    config = write_config(
        tmp_path / "config.json",
        {
            "https://index.docker.io/v1/": {"auth": token},
            "127.0.0.1:5000": {"username": "carol", "password": "pw"},
            "ghcr.io": {"identitytoken": "not-supported"},
        },
    )
    found = load_docker_config(config)
    assert found == {
        "docker.io": Credentials("bob", "hunter2:x"),
        "127.0.0.1:5000": Credentials("carol", "pw"),
    }


def test_docker_config_problems(tmp_path: Path) -> None:
    assert load_docker_config(tmp_path / "missing.json") == {}
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(RegistryAuthError, match=r"broken\.json: cannot read Docker credentials"):
        load_docker_config(broken)
    bad = write_config(tmp_path / "bad.json", {"h.io": {"auth": "%%%"}})
    with pytest.raises(RegistryAuthError, match=r"auths\['h.io'\].auth: not base64"):
        load_docker_config(bad)


def test_docker_config_path_follows_the_environment(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path / "config.json"
    assert docker_config_path({"HOME": str(tmp_path)}) == tmp_path / ".docker" / "config.json"


def test_explicit_credentials_win_over_the_docker_config(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.json",
        {
            "a.test": {"username": "file", "password": "1"},
            "b.test": {"username": "file", "password": "2"},
        },
    )
    store = CredentialStore({"https://a.test": Credentials("flag", "0")}, config)
    assert store.lookup("a.test") == Credentials("flag", "0")
    assert store.lookup("b.test") == Credentials("file", "2")
    assert store.lookup("c.test") is None
    assert CredentialStore().lookup("a.test") is None


def test_token_cache_expires_before_the_token_does() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    key = ("realm", "svc", "repository:a:pull")
    cache.put(key, "t1", 60)
    assert cache.get(key) == "t1"
    assert cache.get(("realm", "svc", "repository:b:pull")) is None
    now[0] += 49
    assert cache.get(key) == "t1"
    now[0] += 2  # within the 10 s safety margin of expiry
    assert cache.get(key) is None
    cache.put(key, "t2", 60)
    cache.drop(key, "other")
    assert cache.get(key) == "t2"
    cache.drop(key, "t2")
    assert cache.get(key) is None


def test_merge_scopes_combines_actions_per_resource() -> None:
    merged = merge_scopes(
        ["repository:a:pull"],
        ["repository:a:push,pull", "repository:b:pull"],
        ["registry:catalog:*"],
    )
    assert merged == ("registry:catalog:*", "repository:a:pull,push", "repository:b:pull")
