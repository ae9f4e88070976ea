"""What GitHub, GitLab and Gitea send, and how each proves a delivery is theirs. Pure.

Each :class:`Provider` reads the headers it defines (event name, delivery id, signature),
checks the signature against an app's secret in constant time, and turns a push payload
into a :class:`PushEvent`. Nothing here does I/O; :mod:`pipeline.hooks.endpoint` does.

- GitHub: ``X-GitHub-Event``, ``X-GitHub-Delivery``, ``X-Hub-Signature-256`` =
  ``sha256=`` + hex HMAC-SHA256 of the raw body.
- GitLab: ``X-Gitlab-Event`` (``Push Hook``), ``X-Gitlab-Token`` = the secret itself,
  delivery id in ``X-Gitlab-Event-UUID`` (or ``Idempotency-Key``).
- Gitea: ``X-Gitea-Event``, ``X-Gitea-Delivery``, ``X-Gitea-Signature`` = bare hex
  HMAC-SHA256 of the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.secrets import Secret

ZERO_SHA = "0" * 40
_HEADS = "refs/heads/"


class PayloadError(ValueError):
    """A payload lacks what its event type promises (the caller answers 400)."""


@dataclass(frozen=True)
class PushEvent:
    """A push to one ref, as any provider reports it."""

    ref: str
    after: str | None
    """The new head; None when the ref was deleted."""
    pusher: str

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/...``, None for tags and other refs."""
        return self.ref.removeprefix(_HEADS) if self.ref.startswith(_HEADS) else None


def hmac_sha256(secret: Secret, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body`` keyed with the secret."""
    return hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()


class Provider(Protocol):
    """One git host's webhook dialect."""

    name: str

    def event(self, headers: Mapping[str, str]) -> str | None:
        """The event name: ``push``, ``ping`` or anything else (None if absent)."""
        ...

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        """The delivery's id; a redelivery carries the same one."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, secret: Secret) -> bool:
        """True when the delivery proves it knows ``secret``; constant time."""
        ...

    def repo_urls(self, payload: Mapping[str, Any]) -> list[str]:
        """Every URL the payload names its repository by."""
        ...

    def parse_push(self, payload: Mapping[str, Any]) -> PushEvent:
        """The push described by ``payload``; :class:`PayloadError` if it is not one."""
        ...


def _text(payload: Mapping[str, Any], *keys: str) -> str | None:
    value: Any = payload
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value else None


def _urls(payload: Mapping[str, Any], section: str, keys: tuple[str, ...]) -> list[str]:
    return [url for key in keys if (url := _text(payload, section, key))]


def _push(payload: Mapping[str, Any], after_keys: tuple[str, ...], pusher: str) -> PushEvent:
    ref = _text(payload, "ref")
    if ref is None:
        raise PayloadError("a push payload needs ref (like refs/heads/main)")
    after = next((v for k in after_keys if (v := _text(payload, k))), None)
    if after is None:
        raise PayloadError("a push payload needs after (the new commit id)")
    after = after.lower()
    if len(after) not in (40, 64) or any(c not in "0123456789abcdef" for c in after):
        raise PayloadError(f"after is not a commit id: {after[:80]!r}")
    deleted = payload.get("deleted") is True or set(after) == {"0"}
    return PushEvent(ref=ref, after=None if deleted else after, pusher=pusher)


def _signed(given: str | None, expected: str) -> bool:
    # compare_digest on equal-length ASCII keeps the time independent of where they differ
    return given is not None and hmac.compare_digest(given.strip().lower(), expected)


class GitHub:
    """GitHub (and GitHub Enterprise) webhooks."""

    name = "github"

    def event(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-github-event")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return headers.get("x-github-delivery") or _body_id(body)

    def verify(self, headers: Mapping[str, str], body: bytes, secret: Secret) -> bool:
        return _signed(headers.get("x-hub-signature-256"), "sha256=" + hmac_sha256(secret, body))

    def repo_urls(self, payload: Mapping[str, Any]) -> list[str]:
        keys = ("clone_url", "git_url", "ssh_url", "html_url", "url", "svn_url")
        return _urls(payload, "repository", keys)

    def parse_push(self, payload: Mapping[str, Any]) -> PushEvent:
        pusher = _text(payload, "pusher", "name") or _text(payload, "sender", "login") or ""
        return _push(payload, ("after",), pusher)


class GitLab:
    """GitLab webhooks: the secret is sent as a token, not as a signature."""

    name = "gitlab"

    def event(self, headers: Mapping[str, str]) -> str | None:
        value = headers.get("x-gitlab-event")
        if value is None:
            return None
        return {"Push Hook": "push", "System Hook": "system"}.get(value, value)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return (
            headers.get("x-gitlab-event-uuid")
            or headers.get("idempotency-key")
            or headers.get("x-gitlab-webhook-uuid")
            or _body_id(body)
        )

    def verify(self, headers: Mapping[str, str], body: bytes, secret: Secret) -> bool:
        token = headers.get("x-gitlab-token")
        return token is not None and secret.matches(token)

    def repo_urls(self, payload: Mapping[str, Any]) -> list[str]:
        keys = ("git_http_url", "git_ssh_url", "web_url", "http_url", "url")
        return _urls(payload, "project", keys) + _urls(
            payload, "repository", ("git_http_url", "git_ssh_url", "url", "homepage")
        )

    def parse_push(self, payload: Mapping[str, Any]) -> PushEvent:
        pusher = _text(payload, "user_username") or _text(payload, "user_name") or ""
        return _push(payload, ("checkout_sha", "after"), pusher)


class Gitea:
    """Gitea (and Forgejo) webhooks."""

    name = "gitea"

    def event(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-gitea-event") or headers.get("x-gogs-event")

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return headers.get("x-gitea-delivery") or _body_id(body)

    def verify(self, headers: Mapping[str, str], body: bytes, secret: Secret) -> bool:
        return _signed(headers.get("x-gitea-signature"), hmac_sha256(secret, body))

    def repo_urls(self, payload: Mapping[str, Any]) -> list[str]:
        return _urls(payload, "repository", ("clone_url", "ssh_url", "html_url", "url"))

    def parse_push(self, payload: Mapping[str, Any]) -> PushEvent:
        pusher = _text(payload, "pusher", "login") or _text(payload, "pusher", "username") or ""
        return _push(payload, ("after",), pusher)


def _body_id(body: bytes) -> str:
    # Without a delivery header the body itself identifies a redelivery.
    return "body-" + hashlib.sha256(body).hexdigest()[:32]


PROVIDERS: dict[str, Provider] = {p.name: p for p in (GitHub(), GitLab(), Gitea())}
