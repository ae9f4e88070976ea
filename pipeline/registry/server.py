"""Assembling a standalone registry from the options of ``berth registry serve``.

:func:`build_registry` turns :class:`RegistryOptions` into a Starlette application
(storage, authenticator, token service); ``pipeline.httpserve.serve`` runs it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from starlette.applications import Starlette

from pipeline.errors import ConfigError, ConfigProblem
from pipeline.registry.access import ACL, Rule
from pipeline.registry.api import create_registry_app
from pipeline.registry.auth import Authenticator, BasicAuth, NoAuth, TokenAuth, TokenService
from pipeline.registry.clock import Clock, SystemClock
from pipeline.registry.config import RegistryConfig
from pipeline.registry.fs import FilesystemRegistryStorage
from pipeline.registry.fs.storage import DEFAULT_UPLOAD_TTL
from pipeline.registry.htpasswd import Htpasswd
from pipeline.registry.tokens import DEFAULT_TTL, TokenSigner, load_or_create_key


class AuthMode(Enum):
    """How the registry identifies callers."""

    NONE = "none"
    BASIC = "basic"
    TOKEN = "token"  # noqa: S105 - a mode name, not a secret


@dataclass(frozen=True)
class RegistryOptions:
    """Everything ``berth registry serve`` can be told."""

    root: Path
    auth: AuthMode = AuthMode.NONE
    htpasswd: Path | None = None
    acl: ACL | None = None
    extra_rules: tuple[Rule, ...] = ()
    token_key: Path | None = None
    token_ttl: float = DEFAULT_TTL
    service: str = "berth"
    upload_ttl: float = DEFAULT_UPLOAD_TTL
    config: RegistryConfig = field(default_factory=RegistryConfig)


def _acl(options: RegistryOptions) -> ACL:
    base = options.acl
    if base is None:
        # Without an ACL every valid user may do anything; --allow rules replace that.
        base = ACL(()) if options.extra_rules else ACL.authenticated_users_may_do_anything()
    return ACL(base.rules + options.extra_rules)


def build_authenticator(
    options: RegistryOptions, clock: Clock
) -> tuple[Authenticator, TokenService | None]:
    """The authenticator (and token service) the options ask for."""
    if options.auth is AuthMode.NONE:
        return NoAuth(), None
    users = Htpasswd(options.htpasswd) if options.htpasswd is not None else None
    acl = _acl(options)
    if options.auth is AuthMode.BASIC:
        if users is None:
            raise ConfigError(
                [ConfigProblem("--auth basic", "", "needs --htpasswd FILE (htpasswd -B)")]
            )
        return BasicAuth(users, acl), None
    key = load_or_create_key(
        options.token_key or FilesystemRegistryStorage.token_key_path(options.root)
    )
    signer = TokenSigner(key, service=options.service, ttl=options.token_ttl, clock=clock)
    return TokenAuth(signer, acl), TokenService(signer, acl, users)


def build_registry(options: RegistryOptions, clock: Clock | None = None) -> Starlette:
    """A standalone registry application for ``options``."""
    clock = clock or SystemClock()
    storage = FilesystemRegistryStorage(options.root, clock=clock, upload_ttl=options.upload_ttl)
    auth, token_service = build_authenticator(options, clock)
    return create_registry_app(storage, auth, options.config, token_service)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` to ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {text!r}: use HOST:PORT, e.g. 127.0.0.1:5000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
