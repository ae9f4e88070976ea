"""The REST API under ``/api/v1``: apps, builds, build logs, releases, events, triggers
(and, as an extension, the deploy endpoints of :mod:`pipeline.api.deploy`).

Each endpoint is an :class:`~pipeline.api.openapi.Operation`; :meth:`RestAPI.routes`
wraps every handler with the token check of its scope and the translation of berth
errors into JSON errors, and the same operations make the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pipeline.api.auth import Principal, TokenAuth
from pipeline.api.errors import HTTPProblem, error_response
from pipeline.api.models import (
    AppList,
    AppOut,
    BuildList,
    BuildOut,
    EventList,
    EventOut,
    HookOut,
    ReleaseList,
    ReleaseOut,
    TriggerIn,
    TriggerOut,
)
from pipeline.api.openapi import Operation, Param, openapi_document
from pipeline.errors import BerthError
from pipeline.git.mirror import GitError
from pipeline.hooks.endpoint import HookTarget
from pipeline.promote.errors import PromotionRefused
from pipeline.queue.logs import BuildLogs
from pipeline.queue.service import BuildService, UnknownApp
from pipeline.queue.workers import BuildWorkers
from pipeline.store import (
    BuildState,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    cli_source,
)

PREFIX = "/api/v1"
MAX_BODY = 64 * 1024
FOLLOW_POLL = 0.2
FOLLOW_LIMIT = 6 * 3600.0  # a followed log stream ends after this many seconds at most

T = TypeVar("T", bound=BaseModel)

_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$", "maxLength": 100}
_ID = {"type": "integer", "minimum": 1}
_LIMIT = Param(
    "limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (100)"
)
_BEFORE = Param("before", "query", _ID, "Only objects with a smaller id (paging back)")


class Extension(Protocol):
    """More operations for the same API (the deploy endpoints, say)."""

    def operations(self) -> list[Operation]: ...


def refusal_status(refused: PromotionRefused) -> tuple[int, str]:
    """HTTP status and error code of a promotion refusal."""
    return _REFUSAL_STATUS.get(refused.refusal, (409, "refused"))


_REFUSAL_STATUS = {
    "forbidden": (403, "forbidden"),
    "unknown": (404, "not_found"),
    "locked": (409, "locked"),
    "conflict": (409, "conflict"),
    "not-passed": (409, "not_passed"),
    "invalid": (400, "bad_request"),
}


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def _int(request: Request, name: str, *, default: int | None = None, low: int = 1) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, "bad_request", f"{name} must be an integer (got {raw!r})") from None
    if value < low:
        raise HTTPProblem(400, "bad_request", f"{name} must be at least {low} (got {value})")
    return value


def _limit(request: Request) -> int:
    value = _int(request, "limit", default=100)
    assert value is not None
    if value > 1000:
        raise HTTPProblem(400, "bad_request", f"limit must be at most 1000 (got {value})")
    return value


def _path_id(request: Request) -> int:
    raw = str(request.path_params["id"])
    text = raw.removeprefix("b-")
    if not text.isdigit() or int(text) < 1:
        raise HTTPProblem(404, "not_found", f"no build {raw!r}: build ids look like 12 or b-12")
    return int(text)


class RestAPI:
    """The REST API over the store, the build service and the build logs."""

    def __init__(
        self,
        service: BuildService,
        auth: TokenAuth,
        logs: BuildLogs,
        *,
        version: str,
        intervals: Mapping[str, timedelta] | None = None,
        hooks: Mapping[str, HookTarget] | None = None,
        workers: BuildWorkers | None = None,
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.service = service
        self.store = service.store
        self.auth = auth
        self.logs = logs
        self.version = version
        self.intervals = dict(intervals or {})
        self.hooks = dict(hooks or {})
        self.workers = workers
        self.operations = self._operations()
        for extension in extensions:
            self.operations += extension.operations()
        self.document = openapi_document(self.operations, version=version)

    # --- wiring --------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Starlette routes for every operation, plus the OpenAPI document."""
        by_path: dict[str, dict[str, Operation]] = {}
        for op in self.operations:
            by_path.setdefault(op.path, {})[op.method] = op
        routes: list[BaseRoute] = []
        for path, methods in by_path.items():
            routes.append(Route(path, self._dispatcher(methods), methods=sorted(methods)))
        return routes

    def _dispatcher(self, methods: Mapping[str, Operation]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            op = methods[request.method if request.method != "HEAD" else "GET"]
            try:
                principal = self._check(request, op.scope)
                return await op.handler(request, principal)
            except HTTPProblem as problem:
                return problem.response()
            except PromotionRefused as refused:
                status, code = refusal_status(refused)
                return error_response(status, code, str(refused))
            except (NotFoundError, UnknownApp) as exc:
                return error_response(404, "not_found", str(exc))
            except ConflictError as exc:
                return error_response(409, "conflict", str(exc))
            except InvalidInputError as exc:
                return error_response(400, "bad_request", str(exc))
            except GitError as exc:
                return error_response(502, "git_unreachable", str(exc))
            except BerthError as exc:
                return error_response(409, "refused", str(exc))

        return endpoint

    def _check(self, request: Request, scope: str | None) -> Principal | None:
        if scope is None:
            return None
        principal = self.auth.authenticate(request.headers.get("authorization"))
        if principal is None:
            raise HTTPProblem(
                401,
                "unauthorized",
                "send a token from api_tokens in the service config as "
                "'Authorization: Bearer TOKEN'",
            )
        if not principal.allows(scope):
            raise HTTPProblem(
                403,
                "forbidden",
                f"token {principal.name!r} has scopes {', '.join(sorted(principal.scopes))}; "
                f"this needs {scope}",
            )
        return principal

    def _operations(self) -> list[Operation]:
        app = Param("app", "path", _NAME, "App name")
        build = Param("id", "path", {"type": "string", "pattern": "^(b-)?[0-9]+$"}, "Build id")
        release = Param("id", "path", _ID, "Release id")
        return [
            Operation("GET", PREFIX + "/openapi.json", "openapi", "This document", None,
                      self.openapi, response=None),
            Operation("GET", PREFIX + "/apps", "listApps", "Watched apps", "read",
                      self.list_apps, response=AppList),
            Operation("GET", PREFIX + "/apps/{app}", "getApp", "One app", "read",
                      self.get_app, params=(app,), response=AppOut, errors=(404,)),
            Operation("GET", PREFIX + "/apps/{app}/releases", "listReleases",
                      "Releases of an app, newest first", "read", self.list_releases,
                      params=(app, _LIMIT, _BEFORE), response=ReleaseList, errors=(400, 404)),
            Operation("POST", PREFIX + "/apps/{app}/builds", "triggerBuild",
                      "Build a commit (default: the branch head)", "deploy", self.trigger,
                      params=(app,), body=TriggerIn, ok=202, also_ok=(200,), response=TriggerOut,
                      errors=(400, 404, 409, 502)),
            Operation("GET", PREFIX + "/apps/{app}/hook", "getAppHook",
                      "The app's secret webhook path", "admin", self.get_hook,
                      params=(app,), response=HookOut, errors=(404,)),
            Operation("GET", PREFIX + "/builds", "listBuilds", "Builds, newest first", "read",
                      self.list_builds,
                      params=(
                          Param("app", "query", _NAME, "Only this app's builds"),
                          Param("state", "query",
                                {"type": "string", "enum": [s.value for s in BuildState]},
                                "Only builds in this state"),
                          _LIMIT, _BEFORE,
                      ),
                      response=BuildList, errors=(400,)),
            Operation("GET", PREFIX + "/builds/{id}", "getBuild", "One build", "read",
                      self.get_build, params=(build,), response=BuildOut, errors=(404,)),
            Operation("POST", PREFIX + "/builds/{id}/cancel", "cancelBuild",
                      "Cancel a queued or running build", "deploy", self.cancel_build,
                      params=(build,), response=BuildOut, errors=(404, 409)),
            Operation("GET", PREFIX + "/builds/{id}/logs", "getBuildLogs",
                      "A build's log; with follow=1, streamed until the build ends", "read",
                      self.build_logs,
                      params=(
                          build,
                          Param("offset", "query", {"type": "integer", "minimum": 0},
                                "Start at this byte"),
                          Param("follow", "query", {"type": "string", "enum": ["0", "1"]},
                                "1: keep streaming while the build runs"),
                      ),
                      response="text/plain", errors=(400, 404)),
            Operation("GET", PREFIX + "/releases/{id}", "getRelease", "One release", "read",
                      self.get_release, params=(release,), response=ReleaseOut,
                      errors=(404,)),
            Operation("GET", PREFIX + "/events", "listEvents",
                      "The audit log, oldest first from after", "read", self.list_events,
                      params=(
                          Param("app", "query", _NAME, "Only events of this app"),
                          Param("after", "query", {"type": "integer", "minimum": 0},
                                "Only events with a larger id (a cursor)"),
                          _LIMIT,
                      ),
                      response=EventList, errors=(400,)),
        ]  # fmt: skip

    # --- handlers ------------------------------------------------------------------

    async def openapi(self, request: Request, principal: Principal | None) -> Response:
        return JSONResponse(self.document)

    def _app_out(self, name: str) -> AppOut:
        stored = self.store.get_app(name)
        builds = self.store.list_builds(name, limit=1)
        releases = self.store.list_releases(name, limit=1)
        interval = self.intervals.get(name)
        hook = self.hooks.get(name)
        return AppOut(
            name=stored.name,
            repo=stored.repo,
            branch=stored.branch,
            webhook=hook.provider if hook else None,
            poll_interval_seconds=interval.total_seconds() if interval else 0.0,
            latest_build=BuildOut.of(builds[0]) if builds else None,
            latest_release=ReleaseOut.of(releases[0]) if releases else None,
        )

    async def list_apps(self, request: Request, principal: Principal | None) -> Response:
        def work() -> AppList:
            return AppList(apps=[self._app_out(a.name) for a in self.store.list_apps()])

        return _json(await asyncio.to_thread(work))

    async def get_app(self, request: Request, principal: Principal | None) -> Response:
        name = str(request.path_params["app"])
        return _json(await asyncio.to_thread(self._app_out, name))

    async def list_releases(self, request: Request, principal: Principal | None) -> Response:
        name = str(request.path_params["app"])
        limit, before = _limit(request), _int(request, "before")
        self._known_app(name)
        found = await asyncio.to_thread(
            self.store.list_releases, name, limit=limit, before_id=before
        )
        return _json(ReleaseList(releases=[ReleaseOut.of(r) for r in found]))

    async def get_release(self, request: Request, principal: Principal | None) -> Response:
        raw = str(request.path_params["id"])
        if not raw.isdigit():
            raise HTTPProblem(404, "not_found", f"no release {raw!r}: release ids are integers")
        release = await asyncio.to_thread(self.store.get_release, int(raw))
        return _json(ReleaseOut.of(release))

    async def trigger(self, request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        name = str(request.path_params["app"])
        body = await read_model(request, TriggerIn)
        self._known_app(name)
        result = await asyncio.to_thread(
            self.service.trigger,
            name,
            body.commit,
            actor=principal.name,
            source=cli_source(principal.name),
        )
        out = TriggerOut(
            result="queued" if result.created else "exists",
            build=BuildOut.of(result.build),
            superseded=[b.id for b in result.superseded],
        )
        return _json(out, 202 if result.created else 200)

    async def get_hook(self, request: Request, principal: Principal | None) -> Response:
        name = str(request.path_params["app"])
        self._known_app(name)
        hook = self.hooks.get(name)
        if hook is None:
            raise HTTPProblem(404, "not_found", f"app {name!r} has no webhook in the config")
        return _json(HookOut(app=name, provider=hook.provider, path=f"/hooks/app/{hook.path_key}"))

    async def list_builds(self, request: Request, principal: Principal | None) -> Response:
        app = request.query_params.get("app") or None
        state = request.query_params.get("state") or None
        if state is not None and state not in {s.value for s in BuildState}:
            known = ", ".join(s.value for s in BuildState)
            raise HTTPProblem(400, "bad_request", f"state must be one of {known} (got {state!r})")
        limit, before = _limit(request), _int(request, "before")
        if app is not None:
            self._known_app(app)
        found = await asyncio.to_thread(
            self.store.list_builds, app, state, limit=limit, before_id=before
        )
        return _json(BuildList(builds=[BuildOut.of(b) for b in found]))

    async def get_build(self, request: Request, principal: Principal | None) -> Response:
        build = await asyncio.to_thread(self.store.get_build, _path_id(request))
        return _json(BuildOut.of(build))

    async def cancel_build(self, request: Request, principal: Principal | None) -> Response:
        assert principal is not None
        if self.workers is None:
            raise HTTPProblem(409, "refused", "this control plane runs no builds")
        build = await asyncio.to_thread(
            self.workers.cancel,
            _path_id(request),
            actor=principal.name,
            source=cli_source(principal.name),
        )
        return _json(BuildOut.of(build))

    async def build_logs(self, request: Request, principal: Principal | None) -> Response:
        build_id = _path_id(request)
        offset = _int(request, "offset", default=0, low=0) or 0
        follow = request.query_params.get("follow", "0")
        if follow not in ("0", "1", "true", "false"):
            raise HTTPProblem(400, "bad_request", f"follow must be 0 or 1 (got {follow!r})")
        build = await asyncio.to_thread(self.store.get_build, build_id)
        if follow in ("0", "false"):
            data = await asyncio.to_thread(self.logs.read, build.id, offset)
            return Response(
                data,
                media_type="text/plain; charset=utf-8",
                headers={"x-log-offset": str(offset + len(data)), "x-build-state": build.state},
            )
        return StreamingResponse(
            self._follow(build.id, offset), media_type="text/plain; charset=utf-8"
        )

    async def _follow(self, build_id: int, offset: int) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + FOLLOW_LIMIT
        while time.monotonic() < deadline:
            data = await asyncio.to_thread(self.logs.read, build_id, offset)
            if data:
                offset += len(data)
                yield data
                continue
            build = await asyncio.to_thread(self.store.get_build, build_id)
            if build.state.finished and not await asyncio.to_thread(self.logs.writing, build_id):
                # the last lines may have landed between the read and the state check
                rest = await asyncio.to_thread(self.logs.read, build_id, offset)
                if rest:
                    yield rest
                return
            await asyncio.sleep(FOLLOW_POLL)

    async def list_events(self, request: Request, principal: Principal | None) -> Response:
        app = request.query_params.get("app") or None
        after = _int(request, "after", low=0)
        limit = _limit(request)
        found = await asyncio.to_thread(
            self.store.list_events, app=app, after_id=after, limit=limit
        )
        return _json(EventList(events=[EventOut.of(e) for e in found]))

    def _known_app(self, name: str) -> None:
        if name not in self.service.apps:
            raise HTTPProblem(404, "not_found", f"unknown app {name!r}: it is not watched")


async def read_model(request: Request, model: type[T]) -> T:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPProblem(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPProblem(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    if not body.strip():
        return model()
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HTTPProblem(415, "unsupported_media", "send the body as application/json")
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        message = str(exc).splitlines()
        raise HTTPProblem(400, "bad_request", "invalid body: " + " ".join(message[:3])) from None
