"""The HTTP session every registry operation goes through.

One pooled ``httpx.Client`` with :class:`RegistryAuth`, the choice of scheme per host,
bounded retries with exponential back-off, and the translation of transport failures
and error answers into berth's :mod:`runners.errors`.

Plain HTTP is used only for hosts in ``insecure_hosts`` and for loopback addresses
(``127.0.0.0/8``, ``::1``, ``localhost``; turn off with ``allow_loopback_http=False``),
and even then only after HTTPS failed for a reason other than an untrusted certificate,
the way Docker treats insecure registries.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx

from runners.errors import ManifestError, RegistryError, RegistryUnavailable
from runners.oci.auth import SCOPE_EXTENSION, CredentialStore, RegistryAuth
from runners.oci.digest import CHUNK
from runners.oci.reference import DOCKER_HUB, DOCKER_HUB_API, Reference
from runners.oci.responses import RETRY_STATUSES, registry_error, retry_after

log = logging.getLogger("berth.oci.client")

MiB = 1 << 20
# Error bodies are read for their message only; more than this is not a message.
MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class RegistryOptions:
    """How a registry client connects, retries and splits work."""

    insecure_hosts: frozenset[str] = frozenset()
    allow_loopback_http: bool = True
    tls_verify: bool = True
    ca_cert: Path | None = None
    timeout: float = 60.0
    connect_timeout: float = 10.0
    retries: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    parallel: int = 4
    monolithic_limit: int = 8 * MiB
    chunk_size: int = 64 * MiB
    user_agent: str = "berth-registry-client"


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.x.y.z`` and ``[::1]``, with or without a port."""
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def api_host(registry: str) -> str:
    """The host to send requests to for ``registry`` (Docker Hub's API has its own)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


class RegistrySession:
    """Sends registry requests: auth, scheme per host, retries, errors."""

    def __init__(
        self,
        options: RegistryOptions,
        credentials: CredentialStore,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = options
        self.credentials = credentials
        self.auth = RegistryAuth(credentials, allow_plain_http=self.allows_plain_http)
        self.sleep = sleep
        self._schemes: dict[str, str] = {}
        self._ping_lock = threading.Lock()
        connections = max(4, 2 * options.parallel)
        self._http = httpx.Client(
            transport=transport
            or httpx.HTTPTransport(
                verify=self._tls_context(),
                limits=httpx.Limits(
                    max_connections=connections, max_keepalive_connections=connections
                ),
            ),
            auth=self.auth,
            timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
            headers={"User-Agent": options.user_agent},
        )

    def _tls_context(self) -> ssl.SSLContext | bool:
        if not self.options.tls_verify:
            return False
        context = ssl.create_default_context()
        if self.options.ca_cert is not None:
            try:
                context.load_verify_locations(cafile=str(self.options.ca_cert))
            except (OSError, ssl.SSLError) as exc:
                raise RegistryError(
                    f"--ca-cert {self.options.ca_cert}: cannot load a PEM CA certificate: {exc}"
                ) from exc
        return context

    def close(self) -> None:
        self._http.close()

    def allows_plain_http(self, host: str) -> bool:
        """True when ``host`` may be spoken to over unencrypted HTTP."""
        if host in self.options.insecure_hosts:
            return True
        return self.options.allow_loopback_http and is_loopback(host)

    def ping(self, registry: str) -> str:
        """Check that ``registry`` speaks ``/v2/``; return the scheme that reaches it."""
        host = api_host(registry)
        with self._ping_lock:
            known = self._schemes.get(host)
            if known is not None:
                return known
            schemes = ["https", "http"] if self.allows_plain_http(host) else ["https"]
            for scheme in schemes:
                # A plain-HTTP server answers a TLS hello with garbage at once: no retries.
                fallback = scheme == "https" and len(schemes) == 2
                try:
                    response = self.send(
                        "GET",
                        f"{scheme}://{host}/v2/",
                        what=f"the API check of {host}",
                        scopes=(),
                        retry=not fallback,
                    )
                except RegistryError as exc:
                    if fallback and not untrusted_certificate(exc):
                        continue
                    raise
                with closing(response):
                    response.read()
                if response.status_code in (200, 401):
                    self._schemes[host] = scheme
                    return scheme
                raise RegistryError(
                    f"{host} is not an OCI registry: GET {scheme}://{host}/v2/ answered "
                    f"{response.status_code}",
                    status=response.status_code,
                )
            raise AssertionError("unreachable: the last scheme either returns or raises")

    def repo_url(self, ref: Reference, suffix: str) -> str:
        """``SCHEME://HOST/v2/REPOSITORY/SUFFIX``, pinging the registry the first time."""
        host = ref.api_host
        scheme = self._schemes.get(host) or self.ping(ref.registry)
        return f"{scheme}://{host}/v2/{ref.repository}/{suffix}"

    def delay(self, attempt: int) -> float:
        """The back-off before retry number ``attempt`` (1, 2, …)."""
        return float(min(self.options.backoff * 2 ** (attempt - 1), self.options.max_backoff))

    def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        scopes: Sequence[str],
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
        retry: bool = True,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send one request, retrying connection failures and 5xx/429 when ``retry``.

        ``content`` must be re-iterable when ``retry`` is set. Any status is returned;
        callers check it and turn failures into errors with :meth:`fail`.
        """
        attempt = 0
        while True:
            request = self._http.build_request(
                method,
                url,
                headers=headers,
                content=content,
                extensions={SCOPE_EXTENSION: tuple(scopes)},
            )
            try:
                response = self._http.send(
                    request, stream=stream, follow_redirects=follow_redirects
                )
            except httpx.TransportError as exc:
                if retry and attempt < self.options.retries and not is_tls_error(exc):
                    attempt += 1
                    log.info(
                        "retrying %s %s after %r (attempt %d of %d)",
                        method, request.url.copy_with(query=None), exc, attempt + 1,
                        self.options.retries + 1,
                    )  # fmt: skip
                    self.sleep(self.delay(attempt))
                    continue
                raise transport_error(exc, request.url, what, attempt + 1) from exc
            if retry and response.status_code in RETRY_STATUSES and attempt < self.options.retries:
                response.close()
                attempt += 1
                log.info(
                    "retrying %s %s after status %d (attempt %d of %d)",
                    method, request.url.copy_with(query=None), response.status_code, attempt + 1,
                    self.options.retries + 1,
                )  # fmt: skip
                wait = retry_after(response.headers.get("Retry-After"), self.options.max_backoff)
                self.sleep(self.delay(attempt) if wait is None else wait)
                continue
            return response

    def fail(self, response: httpx.Response, what: str) -> RegistryError:
        """Read a bounded error body, close the response, and make the error to raise."""
        body = b""
        try:
            for piece in response.iter_bytes():
                body += piece
                if len(body) > MAX_ERROR_BODY:
                    break
        except httpx.HTTPError:
            pass  # the status alone still makes a useful error
        finally:
            response.close()
        host = response.request.url.netloc.decode("ascii")
        return registry_error(
            response.status_code,
            body,
            host=host,
            what=what,
            had_credentials=self.credentials.lookup(host) is not None,
        )

    @staticmethod
    def read_limited(response: httpx.Response, limit: int, what: str) -> bytes:
        """The whole body of a streamed response, refusing more than ``limit`` bytes."""
        buffer = io.BytesIO()
        try:
            for chunk in response.iter_raw(CHUNK):
                buffer.write(chunk)
                if buffer.tell() > limit:
                    raise ManifestError(f"{what}: larger than {limit} bytes; refusing to read it")
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"{what}: connection broke while reading: {exc}") from exc
        finally:
            response.close()
        return buffer.getvalue()


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_tls_error(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError) for e in _exception_chain(exc))


def untrusted_certificate(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLCertVerificationError) for e in _exception_chain(exc))


def transport_error(
    exc: httpx.TransportError, url: httpx.URL, what: str, attempts: int
) -> RegistryError:
    """The berth error for a request that never got an answer."""
    host = url.netloc.decode("ascii")
    for cause in _exception_chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return RegistryError(
                f"TLS certificate of {host} is not trusted ({cause.verify_message}): pass "
                "--ca-cert FILE with the CA that signed it, or --no-tls-verify to accept any"
            )
    if is_tls_error(exc):
        return RegistryError(
            f"TLS handshake with {host} failed ({exc}); if the registry speaks plain HTTP, "
            "allow that with --insecure"
        )
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return RegistryUnavailable(f"cannot reach registry {host} for {what}{tries}: {exc!r}")
