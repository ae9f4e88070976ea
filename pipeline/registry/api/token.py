"""``GET``/``POST /token``: the token endpoint of Docker token authentication.

``GET /token?service=berth&scope=repository:app:pull,push`` with optional Basic
credentials (anonymous otherwise), or the OAuth2 form ``POST`` (``grant_type=password``,
``username``, ``password``, ``scope``, ``service``) that some clients use.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from pipeline.registry.api.context import RegistryContext, read_limited
from pipeline.registry.api.responses import json_response
from pipeline.registry.auth import basic_credentials
from pipeline.registry.errors import DistributionError, ErrorCode

MAX_FORM = 64 * 1024


def _too_large(size: int) -> DistributionError:
    return DistributionError(
        ErrorCode.UNSUPPORTED, {"reason": f"token request of {size} bytes is too large"}, status=413
    )


async def issue_token(ctx: RegistryContext, request: Request) -> Response:
    service = ctx.token_service
    if service is None:
        raise DistributionError(ErrorCode.UNSUPPORTED, {"reason": "token auth is off"}, status=404)
    credentials = basic_credentials(request.headers.get("authorization"))
    if request.method == "POST":
        form = parse_qs(
            (await read_limited(request, MAX_FORM, _too_large)).decode("utf-8", "replace")
        )
        grant = (form.get("grant_type") or [""])[0]
        if grant == "password":
            user = (form.get("username") or [""])[0]
            credentials = (user, (form.get("password") or [""])[0]) if user else None
        elif grant:
            raise DistributionError(
                ErrorCode.UNSUPPORTED,
                {"reason": f"grant_type {grant!r} is not supported (use password)"},
                status=400,
            )
        scopes = [s for value in form.get("scope", []) for s in value.split(" ")]
        requested_service: str | None = (form.get("service") or [""])[0] or None
    else:
        scopes = request.query_params.getlist("scope")
        requested_service = request.query_params.get("service")
    issued = await ctx.blocking(service.issue, credentials, scopes, requested_service)
    return json_response(issued.to_json())
