"""Is this slash command really from Slack (or Mattermost)?

Slack signs every request: ``X-Slack-Signature`` is ``v0=`` followed by the hex
HMAC-SHA256, keyed with the app's signing secret, of ``v0:{timestamp}:{raw body}``, where
the timestamp is ``X-Slack-Request-Timestamp``. :class:`SlackVerifier` compares in
constant time, refuses timestamps more than five minutes away from now, and remembers
the signatures it accepted inside that window, so a captured request cannot be replayed.

Mattermost sends the slash command's token, in the form field ``token`` and (newer
servers) in ``Authorization: Token …``; :class:`MattermostVerifier` compares it in
constant time.

A refusal is a :class:`ChatAuthError` whose message says what was wrong (never a
secret); the HTTP layer answers 401 with it and runs nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable

from pipeline.errors import BerthError
from pipeline.secrets import Secret

__all__ = ["REPLAY_WINDOW", "ChatAuthError", "MattermostVerifier", "SlackVerifier"]

REPLAY_WINDOW = 300.0
"""Seconds a Slack timestamp may be away from now (Slack's own recommendation)."""

_MAX_REMEMBERED = 100_000


class ChatAuthError(BerthError):
    """A chat request could not be verified; nothing was run."""


class SlackVerifier:
    """Verifies Slack request signatures, with replay protection (thread-safe)."""

    def __init__(
        self,
        signing_secret: Secret,
        *,
        clock: Callable[[], float] = time.time,
        window: float = REPLAY_WINDOW,
    ) -> None:
        self._secret = signing_secret
        self._clock = clock
        self._window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def signature(self, timestamp: str, body: bytes) -> str:
        """The signature Slack would send for ``body`` at ``timestamp``."""
        base = b"v0:" + timestamp.encode("ascii") + b":" + body
        digest = hmac.new(self._secret.reveal().encode(), base, hashlib.sha256).hexdigest()
        return "v0=" + digest

    def verify(self, timestamp: str | None, signature: str | None, body: bytes) -> None:
        """Accept the request once, or raise :class:`ChatAuthError` saying why not."""
        if not timestamp:
            raise ChatAuthError("missing X-Slack-Request-Timestamp header")
        if not signature:
            raise ChatAuthError("missing X-Slack-Signature header")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise ChatAuthError("X-Slack-Request-Timestamp is not a Unix time in seconds")
        now = self._clock()
        if abs(now - int(timestamp)) > self._window:
            raise ChatAuthError(
                "stale request: X-Slack-Request-Timestamp is more than "
                f"{self._window / 60:g} minutes from the server's clock (replayed, or a clock is off)"
            )
        expected = self.signature(timestamp, body)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise ChatAuthError(
                "bad X-Slack-Signature: it does not match the body; check chatops/slack/"
                "signing_secret"
            )
        with self._lock:
            self._forget(now)
            if signature in self._seen:
                raise ChatAuthError("replayed request: this signature was already used")
            self._seen[signature] = int(timestamp)

    def _forget(self, now: float) -> None:
        expired = [sig for sig, stamp in self._seen.items() if abs(now - stamp) > self._window]
        for sig in expired:
            del self._seen[sig]
        while len(self._seen) >= _MAX_REMEMBERED:
            # dicts keep insertion order: drop the oldest first
            del self._seen[next(iter(self._seen))]


class MattermostVerifier:
    """Verifies a Mattermost slash command's token."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def verify(self, form_token: str | None, authorization: str | None = None) -> None:
        """Accept the request, or raise :class:`ChatAuthError`."""
        given = form_token
        if authorization and authorization.lower().startswith("token "):
            given = authorization[len("token ") :].strip()
        if not given:
            raise ChatAuthError("missing Mattermost command token")
        if not self._token.matches(given):
            raise ChatAuthError("wrong Mattermost command token; check chatops/mattermost/token")
