"""Registry authentication: challenges, credentials, bearer tokens.

A registry says how it wants to be authenticated in the ``WWW-Authenticate`` header of a
401: ``Basic realm=…`` (send the user and password with every request) or
``Bearer realm=…,service=…,scope=…`` (trade them at ``realm`` for a short-lived token
valid for that scope). :class:`RegistryAuth` plugs this into httpx: once a host's
challenge is known it authenticates requests *before* sending them, so large streamed
uploads are not sent twice; tokens are cached per (realm, service, scope).

Credentials come from explicit configuration first, then ``~/.docker/config.json``.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from runners.errors import RegistryAuthError
from runners.oci.reference import DOCKER_HUB, DOCKER_HUB_ALIASES, Reference

# Request extension through which the client tells the auth flow which scopes it needs.
SCOPE_EXTENSION = "berth.scopes"

# Renew a token this many seconds before it expires: a request must not carry a token
# that expires while it is in flight.
TOKEN_LEEWAY = 10.0
# The token spec's default lifetime when the server does not say.
DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for one registry."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """Parse ``USER:PASS`` (the password may contain ``:``)."""
        username, sep, password = text.partition(":")
        if not sep or not username:
            raise RegistryAuthError("credentials must be given as USER:PASSWORD")
        return cls(username, password)

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``scheme`` is lower-case."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~" + "0123456789abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges (RFC 7235 auth-params)."""
    challenges: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(header)
    while pos < end:
        while pos < end and header[pos] in " \t,":
            pos += 1
        start = pos
        while pos < end and header[pos] in _TOKEN_CHARS:
            pos += 1
        token = header[start:pos]
        if not token:
            pos += 1  # not a token character: skip it rather than loop forever
            continue
        after = pos
        while after < end and header[after] in " \t":
            after += 1
        if after < end and header[after] == "=" and challenges:
            value, pos = _param_value(header, after + 1)
            challenges[-1][1][token.lower()] = value
        else:
            challenges.append((token.lower(), {}))
            pos = after
    return [Challenge(scheme, params) for scheme, params in challenges]


def _param_value(header: str, pos: int) -> tuple[str, int]:
    end = len(header)
    while pos < end and header[pos] in " \t":
        pos += 1
    if pos < end and header[pos] == '"':
        pos += 1
        chars = []
        while pos < end and header[pos] != '"':
            if header[pos] == "\\" and pos + 1 < end:
                pos += 1
            chars.append(header[pos])
            pos += 1
        return "".join(chars), pos + 1
    start = pos
    while pos < end and header[pos] not in ", \t":
        pos += 1
    return header[start:pos], pos


def credential_key(host: str) -> str:
    """The key credentials are stored under: ``host[:port]``, Docker Hub as ``docker.io``."""
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0]
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def docker_config_path(environ: Mapping[str, str]) -> Path:
    """Where Docker keeps its client config: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    directory = environ.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path(environ.get("HOME", "~")).expanduser() / ".docker" / "config.json"


def load_docker_config(path: Path) -> dict[str, Credentials]:
    """The ``auths`` of a Docker client config, by :func:`credential_key`; {} if absent."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RegistryAuthError(f"{path}: cannot read Docker credentials: {exc}") from exc
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return {}
    found: dict[str, Credentials] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        credentials = _entry_credentials(entry, path, key)
        if credentials is not None:
            found[credential_key(key)] = credentials
    return found


def _entry_credentials(entry: Mapping[str, object], path: Path, key: str) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RegistryAuthError(
                f"{path}: auths[{key!r}].auth: not base64 of USER:PASSWORD ({exc})"
            ) from exc
        username, sep, password = decoded.partition(":")
        if not sep:
            raise RegistryAuthError(f"{path}: auths[{key!r}].auth: expected USER:PASSWORD")
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(user, secret)
    return None


class CredentialStore:
    """Credentials per registry: explicit ones first, then a Docker config file."""

    def __init__(
        self,
        explicit: Mapping[str, Credentials] | None = None,
        docker_config: Path | None = None,
    ) -> None:
        self._explicit = {credential_key(k): v for k, v in (explicit or {}).items()}
        self._docker_config = docker_config
        self._loaded: dict[str, Credentials] | None = None
        self._lock = threading.Lock()

    def lookup(self, host: str) -> Credentials | None:
        key = credential_key(host)
        if key in self._explicit:
            return self._explicit[key]
        if self._docker_config is None:
            return None
        with self._lock:
            if self._loaded is None:
                self._loaded = load_docker_config(self._docker_config)
        return self._loaded.get(key)


class TokenCache:
    """Bearer tokens by (realm, service, scopes) until shortly before they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
            if entry is None or entry[1] - TOKEN_LEEWAY <= self._clock():
                return None
            return entry[0]

    def put(self, key: tuple[str, ...], token: str, lifetime: float) -> None:
        with self._lock:
            self._tokens[key] = (token, self._clock() + lifetime)

    def drop(self, key: tuple[str, ...], token: str) -> None:
        with self._lock:
            if self._tokens.get(key, ("", 0.0))[0] == token:
                del self._tokens[key]

    def __len__(self) -> int:
        return len(self._tokens)


def repository_scopes(repository: str, actions: Iterable[str]) -> tuple[str, ...]:
    """``("repository:NAME:pull,push",)`` for the token request."""
    return (f"repository:{repository}:{','.join(actions)}",)


def pull_scope(ref: Reference) -> tuple[str, ...]:
    """The scope to read ``ref``'s repository."""
    return repository_scopes(ref.repository, ["pull"])


def push_scope(ref: Reference) -> tuple[str, ...]:
    """The scope to write ``ref``'s repository (pushes read too: HEAD before upload)."""
    return repository_scopes(ref.repository, ["pull", "push"])


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Union of scopes; actions of the same resource are combined (sorted, deduplicated)."""
    actions: dict[str, set[str]] = {}
    for scope in (s for group in groups for s in group):
        resource, _, acts = scope.rpartition(":")
        if not resource:
            resource, acts = scope, ""
        actions.setdefault(resource, set()).update(a for a in acts.split(",") if a)
    return tuple(
        f"{resource}:{','.join(sorted(acts))}" if acts else resource
        for resource, acts in sorted(actions.items())
    )


class RegistryAuth(httpx.Auth):
    """httpx authentication for registries: Basic and Bearer, with a token cache."""

    def __init__(
        self,
        credentials: CredentialStore,
        *,
        allow_plain_http: Callable[[str], bool],
        cache: TokenCache | None = None,
    ) -> None:
        self.credentials = credentials
        self.cache = cache or TokenCache()
        self._allow_plain_http = allow_plain_http
        self._challenges: dict[str, Challenge] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, ...], threading.Lock] = {}
        self.token_requests = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        host = request.url.netloc.decode("ascii")
        scopes: tuple[str, ...] = tuple(request.extensions.get(SCOPE_EXTENSION) or ())
        known = self._challenges.get(host)
        sent: str | None = None
        if known is not None:
            sent = yield from self._authorization(known, host, scopes)
            if sent is not None:
                request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401:
            return
        challenge = _preferred(parse_challenges(response.headers.get("WWW-Authenticate", "")))
        if challenge is None:
            return
        with self._lock:
            self._challenges[host] = Challenge(
                challenge.scheme, {k: v for k, v in challenge.params.items() if k != "scope"}
            )
        if challenge.scheme == "bearer":
            if not scopes and not challenge.scopes:
                return  # the ping: nothing to authorize yet, the challenge is recorded
            scopes = merge_scopes(scopes, challenge.scopes)
            if sent is not None:
                self.cache.drop(self._token_key(challenge, scopes), sent.removeprefix("Bearer "))
        header = yield from self._authorization(challenge, host, scopes)
        if header is None or header == sent:
            return
        request.headers["Authorization"] = header
        yield request

    def _authorization(
        self, challenge: Challenge, host: str, scopes: tuple[str, ...]
    ) -> Generator[httpx.Request, httpx.Response, str | None]:
        if challenge.scheme == "basic":
            credentials = self.credentials.lookup(host)
            return credentials.basic_header() if credentials else None
        if challenge.scheme != "bearer" or not scopes:
            return None
        key = self._token_key(challenge, scopes)
        with self._key_lock(key):
            token = self.cache.get(key)
            if token is None:
                token = yield from self._fetch_token(challenge, host, scopes, key)
        return f"Bearer {token}"

    def _token_key(self, challenge: Challenge, scopes: tuple[str, ...]) -> tuple[str, ...]:
        return (challenge.realm, challenge.service or "", *scopes)

    def _key_lock(self, key: tuple[str, ...]) -> threading.Lock:
        # One token request per scope even when many upload threads need it at once.
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _fetch_token(
        self, challenge: Challenge, host: str, scopes: tuple[str, ...], key: tuple[str, ...]
    ) -> Generator[httpx.Request, httpx.Response, str]:
        realm = httpx.URL(challenge.realm)
        realm_host = realm.netloc.decode("ascii")
        if realm.scheme not in ("https", "http") or not realm_host:
            raise RegistryAuthError(
                f"registry {host} sent an invalid token realm {challenge.realm!r}"
            )
        if realm.scheme == "http" and not self._allow_plain_http(realm_host):
            raise RegistryAuthError(
                f"registry {host} wants tokens from {challenge.realm} over plain HTTP; "
                f"allow it with --insecure for {realm_host} only if you trust that network"
            )
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("scope", scope) for scope in scopes
        ]
        if challenge.service:
            params.insert(0, ("service", challenge.service))
        headers = {}
        credentials = self.credentials.lookup(host)
        if credentials is not None:
            headers["Authorization"] = credentials.basic_header()
        with self._lock:
            self.token_requests += 1
        response = yield httpx.Request("GET", realm, params=params, headers=headers)
        response.read()
        if response.status_code in (401, 403):
            who = f"user {credentials.username!r}" if credentials else "anonymous access"
            raise RegistryAuthError(
                f"token server {realm_host} refused {who} for {' '.join(scopes)} on {host}: "
                "check the credentials (--creds USER:PASS or docker login)",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise RegistryAuthError(
                f"token server {realm_host} answered {response.status_code} for {host}",
                status=response.status_code,
            )
        try:
            doc = response.json()
        except ValueError as exc:
            raise RegistryAuthError(f"token server {realm_host} sent invalid JSON: {exc}") from exc
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"token server {realm_host} sent no token for {host}")
        lifetime = doc.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        self.cache.put(key, token, float(lifetime))
        return token


def _preferred(challenges: list[Challenge]) -> Challenge | None:
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None
