"""Image references: ``[host[:port]/]repository[:tag][@digest]``.

The grammar is the distribution project's: a first path component is a registry host when
it contains ``.`` or ``:``, is ``localhost``, or has upper-case letters; otherwise the image
lives on Docker Hub (``busybox`` is ``docker.io/library/busybox:latest``). A reference
with neither tag nor digest gets the tag ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from runners.errors import DigestError, ReferenceError_
from runners.oci.digest import Digest

DOCKER_HUB = "docker.io"
# Docker Hub's API is not served on the name people write.
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(
    rf"^(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def is_registry_host(component: str) -> bool:
    """True when the first path component of a name is a registry host, not a namespace."""
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


def valid_tag(tag: str) -> bool:
    """True when ``tag`` is a tag the distribution spec allows."""
    return bool(_TAG_RE.fullmatch(tag))


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``str()`` gives the fully qualified form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``text``; raise :class:`ReferenceError_` saying which part is invalid."""
        original = text
        if not text or text != text.strip():
            raise ReferenceError_(f"invalid image reference {original!r}: empty or has spaces")
        digest: Digest | None = None
        if "@" in text:
            text, digest_text = text.split("@", 1)
            try:
                digest = Digest.parse(digest_text)
            except DigestError as exc:
                raise ReferenceError_(f"invalid image reference {original!r}: {exc}") from exc
        tag: str | None = None
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            text, tag = text[:colon], text[colon + 1 :]
            if not valid_tag(tag):
                raise ReferenceError_(
                    f"invalid image reference {original!r}: tag {tag!r} must be 1-128 of "
                    "letters, digits, '_', '.', '-' and not start with '.' or '-'"
                )
        registry, repository = _split_registry(text)
        if not _HOST_RE.fullmatch(registry):
            raise ReferenceError_(f"invalid image reference {original!r}: bad host {registry!r}")
        if not _REPOSITORY_RE.fullmatch(repository):
            raise ReferenceError_(
                f"invalid image reference {original!r}: repository {repository!r} must be "
                "lower-case components of letters and digits separated by '/', '.', '_' or '-'"
            )
        if len(registry) + 1 + len(repository) > MAX_NAME_LENGTH:
            raise ReferenceError_(
                f"invalid image reference {original!r}: name longer than {MAX_NAME_LENGTH}"
            )
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The ``host[:port]`` to send HTTP requests to."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str:
        """What to ask the manifests endpoint for: the digest if known, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str | None) -> Reference:
        if tag is not None and not valid_tag(tag):
            raise ReferenceError_(f"invalid tag {tag!r} for {self.name}")
        return replace(self, tag=tag)

    def with_digest(self, digest: Digest | None) -> Reference:
        return replace(self, digest=digest)

    def with_repository(self, repository: str) -> Reference:
        if not _REPOSITORY_RE.fullmatch(repository):
            raise ReferenceError_(f"invalid repository {repository!r} on {self.registry}")
        return replace(self, repository=repository)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or not is_registry_host(first):
        registry, repository = DOCKER_HUB, name
    else:
        registry, repository = first, rest
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    return registry, repository
