"""The control plane's REST API under ``/api/v1`` (the CLI talks only to it).

- :mod:`~pipeline.api.routes` - :class:`RestAPI`, the endpoints
- :mod:`~pipeline.api.openapi` - operations declared once, and the OpenAPI document
- :mod:`~pipeline.api.models` - request and response bodies
- :mod:`~pipeline.api.auth` - bearer tokens and scopes
- :mod:`~pipeline.api.errors` - the JSON error shape
"""

from __future__ import annotations

from pipeline.api.auth import ApiCredential, Principal, TokenAuth
from pipeline.api.errors import HTTPProblem, error_response
from pipeline.api.routes import PREFIX, RestAPI

__all__ = [
    "PREFIX",
    "ApiCredential",
    "HTTPProblem",
    "Principal",
    "RestAPI",
    "TokenAuth",
    "error_response",
]
