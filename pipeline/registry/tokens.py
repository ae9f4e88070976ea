"""Short-lived bearer tokens for Docker token authentication (HS256 JWTs).

A token names its subject (the htpasswd user, or none for anonymous) and the
``access`` it grants, in the shape Docker's token spec uses::

    {"iss": "berth", "aud": "berth", "sub": "hosts", "exp": ..., "nbf": ..., "iat": ...,
     "jti": "...", "access": [{"type": "repository", "name": "app", "actions": ["pull"]}]}

The signing key is a random 32-byte secret kept in a file (created with mode 0600 on
first start). Expiry is checked against the registry's :class:`Clock`, not PyJWT's own.
"""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from pipeline.errors import RegistryServerError
from pipeline.registry.access import Access
from pipeline.registry.clock import Clock, SystemClock

ALGORITHM = "HS256"
DEFAULT_TTL = 300.0
LEEWAY = 5.0


class InvalidToken(Exception):
    """A bearer token is malformed, forged, expired or meant for another service."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: who holds it and what it grants."""

    subject: str | None
    access: tuple[Access, ...]
    expires: float


@dataclass(frozen=True)
class IssuedToken:
    """A token as the token endpoint answers it."""

    token: str
    expires_in: int
    issued_at: float

    def to_json(self) -> dict[str, Any]:
        issued = datetime.fromtimestamp(self.issued_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "token": self.token,
            "access_token": self.token,
            "expires_in": self.expires_in,
            "issued_at": issued,
        }


def load_or_create_key(path: Path) -> bytes:
    """The signing key in ``path``, created (random, mode 0600) when it does not exist."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_hex(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # another process created it first; use theirs
            return load_or_create_key(path)
        except OSError as exc:
            raise RegistryServerError(f"cannot create token key {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key
    except OSError as exc:
        raise RegistryServerError(f"cannot read token key {path}: {exc.strerror}") from exc
    key = key.strip()
    if len(key) < 32:
        raise RegistryServerError(
            f"token key {path} is shorter than 32 bytes; use a longer random secret"
        )
    return key


class TokenSigner:
    """Issues and verifies the registry's bearer tokens."""

    def __init__(
        self,
        key: bytes,
        *,
        service: str = "berth",
        issuer: str = "berth",
        ttl: float = DEFAULT_TTL,
        clock: Clock | None = None,
    ) -> None:
        self._key = key
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.clock: Clock = clock or SystemClock()

    def issue(self, subject: str | None, access: list[Access]) -> IssuedToken:
        now = self.clock.now()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.service,
            "sub": subject or "",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + self.ttl),
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": a.type, "name": a.name, "actions": sorted(a.actions)} for a in access
            ],
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return IssuedToken(token, int(self.ttl), now)

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=self.issuer,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iss", "aud", "access"],
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {exc}") from exc
        now = self.clock.now()
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or now > expires + LEEWAY:
            raise InvalidToken("token expired")
        not_before = claims.get("nbf")
        if isinstance(not_before, int | float) and now + LEEWAY < not_before:
            raise InvalidToken("token not valid yet")
        access: list[Access] = []
        raw_access = claims.get("access")
        if not isinstance(raw_access, list):
            raise InvalidToken("token has no access list")
        for entry in raw_access:
            if not isinstance(entry, dict):
                raise InvalidToken("token access entry is not an object")
            kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if (
                not isinstance(kind, str)
                or not isinstance(name, str)
                or not isinstance(actions, list)
            ):
                raise InvalidToken("token access entry lacks type, name or actions")
            access.append(Access(kind, name, frozenset(str(a) for a in actions)))
        subject = claims.get("sub")
        return TokenClaims(
            subject=subject if isinstance(subject, str) and subject else None,
            access=tuple(access),
            expires=float(expires),
        )
