"""Deciding per request who the caller is and whether they may do what they ask.

Three :class:`Authenticator` implementations, chosen when the registry is built:

- :class:`NoAuth` — everybody may do everything (the default, for a loopback registry);
- :class:`BasicAuth` — htpasswd users, checked on every request, then the ACL;
- :class:`TokenAuth` — Docker token auth: the client fetches a signed token from the
  :class:`TokenService` (``GET /token``) and presents it as ``Authorization: Bearer``.

Failures are the spec's errors: missing or bad credentials (and expired or forged
tokens) are 401 ``UNAUTHORIZED`` with a ``WWW-Authenticate`` challenge; a known identity
the ACL does not allow is 403 ``DENIED``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Protocol

from pipeline.registry.access import ACL, Access, parse_scope
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.htpasswd import Htpasswd
from pipeline.registry.tokens import InvalidToken, IssuedToken, TokenSigner


@dataclass(frozen=True)
class Principal:
    """The caller of one request. ``name`` is ``None`` for anonymous callers; a bearer
    token's caller also carries what the token grants."""

    name: str | None
    token_access: tuple[Access, ...] | None = None


ANONYMOUS = Principal(None)
TOKEN_PATH = "/token"  # noqa: S105 - a URL path, not a secret


class Authenticator(Protocol):
    """Identifies the caller of a request and checks what they need."""

    def authenticate(
        self, authorization: str | None, needed: Access | None, base_url: str
    ) -> Principal:
        """Identify the caller and check ``needed`` (``None``: only "who are you", as
        ``GET /v2/`` asks). Raise 401/403 :class:`DistributionError` when refused.
        ``base_url`` (``http://host:port``) is where challenges point clients to."""
        ...

    def permits(self, principal: Principal, access: Access) -> bool:
        """Whether an authenticated caller may also do ``access`` (cross-repo mount)."""
        ...


class NoAuth:
    """Everybody may do everything."""

    def authenticate(
        self, authorization: str | None, needed: Access | None, base_url: str
    ) -> Principal:
        return ANONYMOUS

    def permits(self, principal: Principal, access: Access) -> bool:
        return True


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, ``None`` otherwise."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep and user else None


def _denied(principal: Principal, needed: Access) -> DistributionError:
    return DistributionError(
        ErrorCode.DENIED,
        {"identity": principal.name, "needed": needed.scope()},
    )


class BasicAuth:
    """HTTP Basic authentication against an htpasswd file, then the ACL."""

    def __init__(self, users: Htpasswd, acl: ACL, realm: str = "berth") -> None:
        self.users = users
        self.acl = acl
        self.realm = realm

    def _challenge(self, reason: str) -> DistributionError:
        return DistributionError(
            ErrorCode.UNAUTHORIZED,
            {"reason": reason},
            headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'},
        )

    def authenticate(
        self, authorization: str | None, needed: Access | None, base_url: str
    ) -> Principal:
        principal = ANONYMOUS
        if authorization:
            credentials = basic_credentials(authorization)
            if credentials is None:
                raise self._challenge("use HTTP Basic credentials")
            if not self.users.verify(*credentials):
                raise self._challenge("user name or password is wrong")
            principal = Principal(credentials[0])
        if needed is None:
            if principal.name is None and not self.acl.grants_anything(None):
                raise self._challenge("this registry requires credentials")
            return principal
        if self.acl.allows(principal.name, needed):
            return principal
        if principal.name is None:
            raise self._challenge(f"log in to {needed.scope()}")
        raise _denied(principal, needed)

    def permits(self, principal: Principal, access: Access) -> bool:
        return self.acl.allows(principal.name, access)


class TokenAuth:
    """Bearer tokens issued by :class:`TokenService`, checked against what they grant."""

    def __init__(self, signer: TokenSigner, acl: ACL, token_path: str = TOKEN_PATH) -> None:
        self.signer = signer
        self.acl = acl
        self.token_path = token_path

    def _challenge(
        self, base_url: str, needed: Access | None, reason: str, error: str | None = None
    ) -> DistributionError:
        value = f'Bearer realm="{base_url}{self.token_path}",service="{self.signer.service}"'
        if needed is not None:
            value += f',scope="{needed.scope()}"'
        if error:
            value += f',error="{error}"'
        return DistributionError(
            ErrorCode.UNAUTHORIZED, {"reason": reason}, headers={"WWW-Authenticate": value}
        )

    def authenticate(
        self, authorization: str | None, needed: Access | None, base_url: str
    ) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._challenge(base_url, needed, "a bearer token is required")
        try:
            claims = self.signer.verify(token.strip())
        except InvalidToken as exc:
            raise self._challenge(base_url, needed, str(exc), "invalid_token") from exc
        principal = Principal(claims.subject, claims.access)
        if needed is None or needed.covered_by(claims.access):
            return principal
        if self.acl.allows(claims.subject, needed):
            # the caller may do it, the token just does not say so: ask for a wider one
            raise self._challenge(
                base_url, needed, "the token does not grant this", "insufficient_scope"
            )
        if claims.subject is None:
            raise self._challenge(base_url, needed, f"log in to {needed.scope()}")
        raise _denied(principal, needed)

    def permits(self, principal: Principal, access: Access) -> bool:
        return principal.token_access is not None and access.covered_by(principal.token_access)


class TokenService:
    """The token endpoint: authenticates with htpasswd (or anonymously) and grants the
    requested scopes as far as the ACL allows."""

    def __init__(self, signer: TokenSigner, acl: ACL, users: Htpasswd | None) -> None:
        self.signer = signer
        self.acl = acl
        self.users = users

    def issue(
        self,
        credentials: tuple[str, str] | None,
        scopes: list[str],
        service: str | None,
    ) -> IssuedToken:
        if service and service != self.signer.service:
            raise DistributionError(
                ErrorCode.UNSUPPORTED,
                {"reason": f"this token service serves {self.signer.service!r}, not {service!r}"},
                status=400,
            )
        subject: str | None = None
        if credentials is not None:
            if self.users is None or not self.users.verify(*credentials):
                raise DistributionError(
                    ErrorCode.UNAUTHORIZED,
                    {"reason": "user name or password is wrong"},
                    headers={"WWW-Authenticate": 'Basic realm="berth"'},
                )
            subject = credentials[0]
        granted: list[Access] = []
        for text in scopes:
            for part in text.split(" "):
                wanted = parse_scope(part)
                if wanted is None:
                    continue
                actions = self.acl.granted(subject, wanted)
                if actions:
                    granted.append(Access(wanted.type, wanted.name, actions))
        return self.signer.issue(subject, granted)
