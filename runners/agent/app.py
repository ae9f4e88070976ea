"""The agent's HTTP API (JSON under ``/v1``), a Starlette app over an :class:`Agent`.

Endpoints are plain functions run in Starlette's thread pool, because the agent's work
(mounts, runc, registry pulls) blocks. Every error is a JSON body
``{"error": {"status": N, "message": "..."}}``: 4xx names what the caller got wrong,
5xx is ours. Query parameters are checked as strictly as bodies: an unknown one is a 400.

:class:`TokenAuth` guards the TCP listeners: ``Authorization: Bearer <token>``, compared
in constant time. The unix socket is guarded by its file mode instead.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runners.agent.agent import Agent
from runners.agent.errors import AgentError, BadSpec, Unauthorized, UnusableImage
from runners.agent.logs import STREAMS, follow, tail_lines
from runners.errors import LayerError, OCIError, RunnerError

_log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


def build_app(agent: Agent) -> Starlette:
    """The API of ``agent`` (without authentication; see :class:`TokenAuth`)."""

    def info(request: Request) -> Response:
        _params(request, set())
        return _json(agent.info())

    def list_instances(request: Request) -> Response:
        _params(request, set())
        return _json({"instances": agent.list_instances()})

    def put_instance(request: Request) -> Response:
        _params(request, set())
        doc = _body(request)
        created, view = agent.put_instance(request.path_params["id"], doc)
        return _json(view, 201 if created else 200)

    def get_instance(request: Request) -> Response:
        _params(request, set())
        return _json(agent.get_instance(request.path_params["id"]))

    def delete_instance(request: Request) -> Response:
        _params(request, set())
        return _json(agent.delete_instance(request.path_params["id"]))

    def logs(request: Request) -> Response:
        params = _params(request, {"tail", "follow", "stream"})
        instance_id = request.path_params["id"]
        paths = agent.log_paths(instance_id)
        stream = params.get("stream", "all")
        if stream not in (*STREAMS, "all"):
            raise BadSpec(f"stream: must be stdout, stderr or all (got {stream!r})")
        chosen = [paths[name] for name in STREAMS if stream in (name, "all")]
        tail = _int_param(params, "tail")
        follow_on = params.get("follow", "0") in ("1", "true", "yes")

        def body() -> Iterator[bytes]:
            for path in chosen:
                yield from tail_lines(path, tail)
            if follow_on:
                yield from follow(chosen, lambda: agent.is_running(instance_id))

        if not follow_on:
            return Response(b"".join(body()), media_type="text/plain; charset=utf-8")
        return StreamingResponse(body(), media_type="text/plain; charset=utf-8")

    def exec_in(request: Request) -> Response:
        _params(request, set())
        doc = _body(request)
        if not isinstance(doc, dict) or set(doc) - {"command", "timeout"}:
            extra = sorted(set(doc) - {"command", "timeout"}) if isinstance(doc, dict) else []
            raise BadSpec(f"exec: unknown field {extra[0]!r}" if extra else "exec: an object")
        command = doc.get("command")
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise BadSpec("exec.command: must be a list of strings")
        timeout = doc.get("timeout", 60)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise BadSpec("exec.timeout: must be a positive number of seconds")
        return _json(agent.exec(request.path_params["id"], command, float(timeout)))

    def pull(request: Request) -> Response:
        _params(request, set())
        doc = _body(request)
        if not isinstance(doc, dict):
            raise BadSpec('pull: the body must be an object {"image": REFERENCE}')
        for key in doc:
            if key != "image":
                raise BadSpec(f"pull.{key}: unknown field (allowed: image)")
        return _json(agent.pull(doc.get("image")))

    def images(request: Request) -> Response:
        _params(request, set())
        return _json({"images": agent.list_images()})

    def pin(request: Request) -> Response:
        _params(request, set())
        return _json(agent.pin(request.path_params["digest"]))

    def unpin(request: Request) -> Response:
        _params(request, set())
        return _json(agent.unpin(request.path_params["digest"]))

    def gc(request: Request) -> Response:
        _params(request, set())
        return _json(agent.gc())

    routes = [
        Route("/v1/info", info, methods=["GET"]),
        Route("/v1/instances", list_instances, methods=["GET"]),
        Route("/v1/instances/{id}", put_instance, methods=["PUT"]),
        Route("/v1/instances/{id}", get_instance, methods=["GET"]),
        Route("/v1/instances/{id}", delete_instance, methods=["DELETE"]),
        Route("/v1/instances/{id}/logs", logs, methods=["GET"]),
        Route("/v1/instances/{id}/exec", exec_in, methods=["POST"]),
        Route("/v1/images/pull", pull, methods=["POST"]),
        Route("/v1/images", images, methods=["GET"]),
        Route("/v1/images/pins/{digest}", pin, methods=["PUT"]),
        Route("/v1/images/pins/{digest}", unpin, methods=["DELETE"]),
        Route("/v1/gc", gc, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.add_exception_handler(RunnerError, _runner_error)  # type: ignore[arg-type]
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    return app


class TokenAuth:
    """ASGI middleware: HTTP requests must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let anyone in")
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                reason = "missing" if not given else "wrong"
                error = Unauthorized(
                    f"authorization {reason}: TCP requests need 'Authorization: Bearer <token>'"
                    " with the token of the agent's --token-file"
                )
                response = _error(error)
                response.headers["WWW-Authenticate"] = 'Bearer realm="berth-agent"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- helpers ---------------------------------------------------------------------------


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, sort_keys=True, default=str), status, media_type="application/json"
    )


def _error(exc: AgentError) -> Response:
    body = {"status": exc.status, "kind": exc.kind, "message": str(exc)}
    return _json({"error": body}, exc.status)


def _params(request: Request, allowed: set[str]) -> dict[str, str]:
    for key in request.query_params:
        if key not in allowed:
            hint = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
            raise BadSpec(f"query parameter {key!r}: unknown{hint}")
    return dict(request.query_params)


def _int_param(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    text = params[name]
    if not text.isdigit():
        raise BadSpec(f"{name}: must be a non-negative integer (got {text!r})")
    return int(text)


def _body(request: Request) -> Any:
    # Starlette's sync endpoints cannot await the body; the server reads it beforehand
    raw: bytes = request.scope.get("berth.body", b"")
    if not raw:
        raise BadSpec("body: missing; send a JSON object")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadSpec(f"body: not valid JSON: {exc}") from exc


def _runner_error(request: Request, exc: RunnerError) -> Response:
    if isinstance(exc, AgentError):
        return _error(exc)
    if isinstance(exc, LayerError | OCIError):
        return _error(UnusableImage(str(exc)))
    _log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return _error(AgentError(str(exc), status=500))


def _not_found(request: Request, exc: Exception) -> Response:
    return _error(AgentError(f"{request.url.path}: no such endpoint (see /v1/...)", status=404))


def _not_allowed(request: Request, exc: Exception) -> Response:
    return _error(
        AgentError(f"{request.method} {request.url.path}: method not allowed", status=405)
    )


class BodyReader:
    """ASGI middleware: read the request body (capped) into ``scope['berth.body']``."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("PUT", "POST"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _error(BadSpec(f"body: larger than {self.limit} bytes"))(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        scope["berth.body"] = b"".join(chunks)
        await self.app(scope, receive, send)
