"""Bearer tokens of the REST API and what their scopes allow.

Scopes nest: ``admin`` may do everything ``deploy`` may, and ``deploy`` everything
``read`` may. A presented token is compared with every configured token in constant
time, so neither the answer's time nor its content tells how close a guess was.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.secrets import Secret

SCOPES = ("read", "deploy", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (the identity in the audit log) and its scopes."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """True when one of the token's scopes is ``scope`` or a wider one."""
        rank = SCOPES.index(scope)
        return any(SCOPES.index(s) >= rank for s in self.scopes if s in SCOPES)


@dataclass(frozen=True)
class ApiCredential:
    """One configured token."""

    name: str
    secret: Secret
    scopes: frozenset[str]


class TokenAuth:
    """Resolves ``Authorization: Bearer ...`` to a :class:`Principal`."""

    def __init__(self, credentials: Iterable[ApiCredential]) -> None:
        self._credentials = tuple(credentials)

    def authenticate(self, header: str | None) -> Principal | None:
        """The principal of a valid bearer token, None otherwise."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode()
        found: ApiCredential | None = None
        for credential in self._credentials:
            # no early exit: every token is compared whatever matched before
            if hmac.compare_digest(credential.secret.reveal().encode(), given):
                found = credential
        return None if found is None else Principal(found.name, found.scopes)
