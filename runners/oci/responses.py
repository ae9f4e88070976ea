"""Reading registry responses: error bodies, ``Link`` pagination, ``Location``, ranges.

Pure functions of status, headers and body, so each rule is tested without a server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from runners.errors import (
    RegistryAuthError,
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
)

# Statuses worth retrying: the request may succeed unchanged a moment later.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of the distribution spec's ``{"errors": [...]}`` body."""

    code: str
    message: str


def error_details(body: bytes) -> list[ErrorDetail]:
    """The ``errors`` of a registry error body; [] when it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    details = []
    for entry in errors:
        if isinstance(entry, dict):
            details.append(ErrorDetail(str(entry.get("code", "")), str(entry.get("message", ""))))
    return details


def registry_error(
    status: int,
    body: bytes,
    *,
    host: str,
    what: str,
    had_credentials: bool,
) -> RegistryError:
    """The berth error for a failed response, with a message saying what to do."""
    details = error_details(body)
    code = details[0].code if details else None
    summary = "; ".join(f"{d.code}: {d.message}" if d.message else d.code for d in details)
    if not summary:
        summary = body[:200].decode("utf-8", "replace").strip() or "no details"
    if status == 401:
        if had_credentials:
            return RegistryAuthError(
                f"registry {host} refused the credentials for {what}: check the user name "
                f"and password ({summary})",
                status=status,
                code=code,
            )
        return RegistryAuthError(
            f"registry {host} requires authentication for {what}: pass --creds USER:PASS "
            "or log in (docker login writes ~/.docker/config.json)",
            status=status,
            code=code,
        )
    if status == 403:
        return RegistryAuthError(
            f"registry {host} denied {what}: the account lacks permission ({summary})",
            status=status,
            code=code,
        )
    if status == 404:
        return RegistryNotFound(
            f"{what}: not found on {host} ({summary})", status=status, code=code
        )
    if status == 405:
        return RegistryError(
            f"registry {host} does not allow {what} ({summary}); on docker-registry deletes "
            "need storage.delete.enabled",
            status=status,
            code=code,
        )
    if status in RETRY_STATUSES:
        return RegistryUnavailable(
            f"registry {host} answered {status} to {what} after retries ({summary}); "
            "try again later",
            status=status,
            code=code,
        )
    return RegistryError(
        f"registry {host} answered {status} to {what}: {summary}", status=status, code=code
    )


_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def next_link(header: str | None, base_url: str) -> str | None:
    """The absolute URL of the ``rel="next"`` link of a ``Link`` header, if any."""
    if not header:
        return None
    for match in _LINK_RE.finditer(header):
        params = match.group(2)
        if re.search(r';\s*rel\s*=\s*"?next"?', params):
            return urljoin(base_url, str(match.group(1)))
    return None


def resolve_location(base_url: str, location: str | None, *, what: str) -> str:
    """An upload ``Location`` made absolute (registries may send a bare path)."""
    if not location:
        raise RegistryError(f"registry sent no Location header for {what}")
    return urljoin(base_url, location)


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query, keeping what is there (``_state``…)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


def content_range_start(header: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes A-B/N`` header; None if unparseable."""
    if not header:
        return None
    match = _CONTENT_RANGE_RE.match(header.strip())
    return int(match.group(1)) if match else None


def retry_after(header: str | None, limit: float) -> float | None:
    """Seconds from a ``Retry-After: N`` header, capped at ``limit``; None if absent."""
    if not header:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    return max(0.0, min(seconds, limit))
