"""Repository names, tags, upload ids and the request paths of the distribution API.

Everything here is pure: it turns the path below ``/v2/`` into an :class:`APIPath` and
refuses names, tags and references that the spec does not allow. Because every name is
checked against the spec's grammar before it reaches storage, no name can contain
``..``, an empty component or any character that means something to a filesystem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from pipeline.registry.errors import DistributionError, ErrorCode
from runners.errors import DigestError
from runners.oci.digest import Digest

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    """True when ``name`` is a repository name the spec allows."""
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    """Return ``name`` or raise ``NAME_INVALID`` saying why it is refused."""
    if not name:
        raise DistributionError(ErrorCode.NAME_INVALID, "the repository name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise DistributionError(
            ErrorCode.NAME_INVALID,
            f"repository name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}",
        )
    if NAME_RE.fullmatch(name) is None:
        raise DistributionError(
            ErrorCode.NAME_INVALID,
            f"invalid repository name {name!r}: use lowercase path components "
            "separated by '/' (letters, digits and single '.', '_', '__' or '-' runs inside)",
        )
    return name


def is_valid_tag(tag: str) -> bool:
    """True when ``tag`` is a tag the spec allows (``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``)."""
    return TAG_RE.fullmatch(tag) is not None


def parse_digest(text: str) -> Digest:
    """Parse a digest from a URL or query; ``DIGEST_INVALID`` when it is not one."""
    try:
        return Digest.parse(text)
    except DigestError as exc:
        raise DistributionError(ErrorCode.DIGEST_INVALID, str(exc)) from exc


class Endpoint(Enum):
    """Which API endpoint a path below ``/v2/`` addresses."""

    BASE = "base"
    CATALOG = "catalog"
    BLOB = "blob"
    UPLOAD = "upload"
    MANIFEST = "manifest"
    TAGS = "tags"
    REFERRERS = "referrers"


@dataclass(frozen=True)
class APIPath:
    """A parsed path: the endpoint, the repository and the trailing reference.

    ``reference`` is the digest of a blob or referrers call, the tag or digest of a
    manifest, or the upload id (empty when a new upload is started).
    """

    endpoint: Endpoint
    name: str = ""
    reference: str = ""


# Names may contain the words "blobs", "manifests" ... as components, so each pattern
# anchors at the end and the greedy ``.+`` picks the last occurrence; references never
# contain "/", which makes the split unambiguous.
_PATTERNS: tuple[tuple[Endpoint, re.Pattern[str]], ...] = (
    (Endpoint.UPLOAD, re.compile(r"(?P<name>.+)/blobs/uploads(?:/(?P<ref>[^/]*))?")),
    (Endpoint.BLOB, re.compile(r"(?P<name>.+)/blobs/(?P<ref>[^/]+)")),
    (Endpoint.MANIFEST, re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    (Endpoint.TAGS, re.compile(r"(?P<name>.+)/tags/list")),
    (Endpoint.REFERRERS, re.compile(r"(?P<name>.+)/referrers/(?P<ref>[^/]+)")),
)


def parse_api_path(path: str) -> APIPath | None:
    """Parse the path below ``/v2/``; ``None`` when it addresses no endpoint.

    The repository name is returned as found; callers validate it with
    :func:`check_name` so that a bad name is answered with ``NAME_INVALID`` rather
    than a 404.
    """
    if path in ("", "/"):
        return APIPath(Endpoint.BASE)
    if path == "_catalog":
        return APIPath(Endpoint.CATALOG)
    for endpoint, pattern in _PATTERNS:
        match = pattern.fullmatch(path)
        if match:
            return APIPath(endpoint, match.group("name"), match.groupdict().get("ref") or "")
    return None
