"""Who may read the dashboard: the REST API's bearer tokens, turned into a session cookie.

A browser cannot send ``Authorization`` headers with ``EventSource``, so the login form
posts the token once; when :class:`~pipeline.api.auth.TokenAuth` accepts it (with the
``read`` scope), the answer sets a cookie that holds the token's *name* and an expiry,
signed with HMAC-SHA256 under a key that never leaves the process. The token itself is
never stored in the browser beyond the form. The cookie is ``HttpOnly`` (scripts cannot
read it) and ``SameSite=Strict`` (other sites cannot make the browser send it).

Tokens are compared by ``TokenAuth`` in constant time; signatures here by
:func:`hmac.compare_digest`. Requests may also send ``Authorization: Bearer ...`` directly
(scripts, tests). A new key per process means a restart signs everyone out, and so does
revoking a token followed by a restart; sessions otherwise end after ``lifetime``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import timedelta

from starlette.requests import HTTPConnection

from pipeline.api.auth import Principal, TokenAuth
from pipeline.store import Clock, SystemClock

__all__ = ["COOKIE", "DashboardAuth"]

COOKIE = "berth_session"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DashboardAuth:
    """Checks API tokens for the dashboard and issues and verifies its session cookies."""

    def __init__(
        self,
        tokens: TokenAuth,
        *,
        key: bytes | None = None,
        lifetime: timedelta = timedelta(hours=8),
        scope: str = "read",
        clock: Clock | None = None,
    ) -> None:
        self._tokens = tokens
        self._key = key if key is not None else secrets.token_bytes(32)
        self.lifetime = lifetime
        self._scope = scope
        self._clock = clock or SystemClock()

    def check_token(self, token: str) -> Principal | None:
        """The principal of ``token`` if it is valid and may read; None otherwise."""
        principal = self._tokens.authenticate(f"Bearer {token}")
        if principal is None or not principal.allows(self._scope):
            return None
        return principal

    def issue(self, principal: Principal) -> str:
        """A signed cookie value naming ``principal``, valid for ``lifetime``."""
        expires = int((self._clock.now() + self.lifetime).timestamp())
        payload = _b64(json.dumps({"n": principal.name, "e": expires}).encode())
        return f"{payload}.{self._sign(payload)}"

    def verify(self, value: str) -> str | None:
        """The token name in a cookie value this process signed and that has not
        expired; None for anything else."""
        payload, dot, signature = value.partition(".")
        if not dot or not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            document = json.loads(_unb64(payload))
            name, expires = str(document["n"]), int(document["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= self._clock.now().timestamp():
            return None
        return name

    def reader(self, request: HTTPConnection) -> str | None:
        """Who reads: the token name from the session cookie or a bearer header; None
        when the request carries neither a valid session nor a valid token."""
        header = request.headers.get("authorization")
        if header:
            principal = self._tokens.authenticate(header)
            if principal is not None and principal.allows(self._scope):
                return principal.name
            return None
        cookie = request.cookies.get(COOKIE)
        return None if cookie is None else self.verify(cookie)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
