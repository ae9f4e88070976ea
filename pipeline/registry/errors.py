"""The error codes of the OCI distribution spec and the exception that carries them.

Every failure the registry reports to a client is a :class:`DistributionError`: a spec
error code (``BLOB_UNKNOWN``, ``DIGEST_INVALID`` ...), the HTTP status it is sent with,
a human message and an optional ``detail``. Storage, validation and auth raise these
directly because the spec's codes *are* the vocabulary of the registry's domain; the HTTP
layer only serialises them as ``{"errors": [{"code", "message", "detail"}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pipeline.errors import RegistryServerError


class ErrorCode(Enum):
    """A spec error code with its usual HTTP status and the spec's message."""

    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (405, "the operation is unsupported")
    TOO_MANY_REQUESTS = (429, "too many requests")
    # Not in the spec's table, which allows registries to add codes; CNCF distribution
    # answers a malformed ``n`` with this one, so clients already know it.
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    # Only for our own failures (5xx); clients treat unknown codes as UNKNOWN anyway.
    UNKNOWN = (500, "unknown error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


class DistributionError(RegistryServerError):
    """A request the registry refuses, carrying the spec error code to answer with."""

    def __init__(
        self,
        code: ErrorCode,
        detail: Any = None,
        *,
        status: int | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.status = status if status is not None else code.status
        self.message = message or code.message
        self.headers = dict(headers or {})
        text = f"{code.name}: {self.message}"
        if detail is not None:
            text += f" ({detail})"
        super().__init__(text)

    def body(self) -> dict[str, Any]:
        """The JSON error document of the spec."""
        error: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}
