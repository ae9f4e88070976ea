"""Provider dialects (pure): signatures, events, push payloads, repository URL keys."""

from __future__ import annotations

import pytest

from pipeline.api.auth import ApiCredential, Principal, TokenAuth
from pipeline.git.remote import GitAuth, GitRemote, normalize_repo_url
from pipeline.hooks.providers import PROVIDERS, PayloadError
from pipeline.secrets import Secret, SecretSource
from tests.control.support import PUSH_PAYLOADS, signed

pytestmark = pytest.mark.unit

SECRET = Secret("s3cret-value", SecretSource(env="X"))
SHA = "a" * 40


@pytest.mark.parametrize("name", ["github", "gitlab", "gitea"])
def test_each_provider_verifies_its_own_signature_and_parses_a_push(name: str) -> None:
    provider = PROVIDERS[name]
    body, headers = signed(
        name, PUSH_PAYLOADS[name]("https://h/t/a.git", SHA), secret="s3cret-value"
    )
    assert provider.verify(headers, body, SECRET)
    assert not provider.verify(headers, body + b" ", SECRET) or name == "gitlab"
    assert not provider.verify(headers, body, Secret("other-value", SecretSource(env="X")))
    assert provider.event(headers) == "push"
    assert provider.delivery_id(headers, body)
    import json

    push = provider.parse_push(json.loads(body))
    assert (push.branch, push.after) == ("main", SHA)
    assert "https://h/t/a.git" in provider.repo_urls(json.loads(body))


def test_deleted_refs_tags_and_broken_payloads() -> None:
    github = PROVIDERS["github"]
    deleted = github.parse_push({"ref": "refs/heads/main", "after": "0" * 40, "deleted": True})
    assert deleted.after is None
    assert github.parse_push({"ref": "refs/tags/v1", "after": SHA}).branch is None
    with pytest.raises(PayloadError, match="ref"):
        github.parse_push({"after": SHA})
    with pytest.raises(PayloadError, match="commit id"):
        github.parse_push({"ref": "refs/heads/main", "after": "main"})
    gitlab = PROVIDERS["gitlab"]
    push = gitlab.parse_push({"ref": "refs/heads/x", "checkout_sha": SHA, "after": "b" * 40})
    assert push.after == SHA  # checkout_sha wins, as GitLab documents


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://GitHub.com/Team/App.git", "github.com/Team/App"),
        ("git@github.com:Team/App", "github.com/Team/App"),
        ("ssh://git@github.com:22/Team/App.git/", "github.com/Team/App"),
        ("https://user:pw@git.example.com:8443/a/b", "git.example.com/a/b"),
        ("file:///srv/git/app.git", "file:/srv/git/app"),
        ("/srv/git/app.git/", "file:/srv/git/app"),
    ],
)
def test_repository_urls_normalise_to_one_key(url: str, key: str) -> None:
    assert normalize_repo_url(url) == key


def test_git_credentials_stay_out_of_urls_and_argv() -> None:
    remote = GitRemote(
        "https://bob:pw@git.example.com/a.git",
        GitAuth("bob", Secret("tok-123456", SecretSource(env="X"))),
    )
    assert "pw" not in remote.display()
    env = remote.environment()
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")


def test_tokens_and_nested_scopes() -> None:
    auth = TokenAuth(
        [
            ApiCredential("ci", Secret("token-ci-1", SecretSource(env="A")), frozenset({"read"})),
            ApiCredential(
                "ops", Secret("token-ops-2", SecretSource(env="B")), frozenset({"admin"})
            ),
        ]
    )
    assert auth.authenticate("Bearer token-ci-1") == Principal("ci", frozenset({"read"}))
    assert auth.authenticate("bearer token-ops-2") is not None
    assert auth.authenticate("Bearer token-ci-") is None
    assert auth.authenticate("Basic token-ci-1") is None
    assert auth.authenticate(None) is None
    ops = Principal("ops", frozenset({"admin"}))
    reader = Principal("ci", frozenset({"read"}))
    assert ops.allows("read")
    assert ops.allows("deploy")
    assert ops.allows("admin")
    assert reader.allows("read")
    assert not reader.allows("deploy")
