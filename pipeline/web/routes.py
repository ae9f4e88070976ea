"""The dashboard's HTTP routes, for the control plane to mount at ``/``.

=====================  ===================================================================
``GET /``              the dashboard (303 to ``/login`` without a session)
``GET/POST /login``    the token form; a valid token sets the session cookie
``POST /logout``       ends the session
``GET /events``        the live stream (``text/event-stream``; 401 without a session)
``GET /builds/{id}``   one build and the tail of its log
``/static/...``        the style sheet and the script
=====================  ===================================================================

Everything but the login form and the static files needs a reader (see
:mod:`pipeline.web.session`). Pages are read-only: there is no route that changes state
besides signing in and out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.api.auth import TokenAuth
from pipeline.logs import get_logger
from pipeline.web.page import build_page, dashboard_page, login_page, message_page
from pipeline.web.session import COOKIE, DashboardAuth
from pipeline.web.source import DashboardSource
from pipeline.web.stream import StreamLimits, StreamSlots, snapshot_events

__all__ = ["WebOptions", "web_routes"]

log = get_logger("web")

STATIC = Path(__file__).parent / "static"
_MAX_FORM = 8 * 1024

# No inline script or style can run, whatever ends up in a page; no framing; the page
# talks only to this origin.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class WebOptions:
    """Tuning of the dashboard's routes."""

    stream: StreamLimits = field(default_factory=StreamLimits)


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def web_routes(
    source: DashboardSource,
    auth: DashboardAuth | TokenAuth,
    *,
    options: WebOptions | None = None,
) -> list[BaseRoute]:
    """The dashboard's routes (see the module docstring); mount them at ``/``.

    ``auth`` is the REST API's :class:`~pipeline.api.auth.TokenAuth` (sessions are then
    signed with a key made here) or a configured :class:`DashboardAuth`."""
    if isinstance(auth, TokenAuth):
        auth = DashboardAuth(auth)
    settings = options or WebOptions()
    slots = StreamSlots(settings.stream.max_streams)

    async def index(request: Request) -> Response:
        reader = auth.reader(request)
        if reader is None:
            return RedirectResponse("/login", status_code=303)
        data = await run_in_threadpool(source.snapshot)
        return _html(dashboard_page(data, reader=reader))

    async def login_form(request: Request) -> Response:
        if auth.reader(request) is not None:
            return RedirectResponse("/", status_code=303)
        return _html(login_page())

    async def login(request: Request) -> Response:
        body = await _bounded_body(request)
        if body is None:
            return _html(login_page(error="The form was too large."), 413)
        token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        principal = auth.check_token(token) if token else None
        if principal is None:
            client = request.client.host if request.client else "?"
            log.warning("dashboard sign-in refused from %s", client)
            return _html(login_page(error="That token is not valid here (or may not read)."), 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            auth.issue(principal),
            max_age=int(auth.lifetime.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def events(request: Request) -> Response:
        if auth.reader(request) is None:
            return JSONResponse(
                {"error": "sign in at /login (or send Authorization: Bearer TOKEN)"},
                status_code=401,
            )
        if not slots.take():
            return JSONResponse(
                {"error": "too many open dashboard streams; close some tabs and retry"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return StreamingResponse(
            snapshot_events(source, settings.stream, slots),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def build(request: Request) -> Response:
        reader = auth.reader(request)
        if reader is None:
            return RedirectResponse("/login", status_code=303)
        build_id = int(request.path_params["build_id"])
        view = await run_in_threadpool(source.build_log, build_id)
        if view is None:
            return _html(
                message_page("No such build", f"There is no build {build_id}.", reader=reader),
                404,
            )
        return _html(build_page(view, reader=reader))

    return [
        Route("/", index, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events, methods=["GET"]),
        Route("/builds/{build_id:int}", build, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
    ]


async def _bounded_body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than a sign-in form can be."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_FORM:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
