"""The registry's Starlette application: request dispatch, authorization, errors.

:class:`RegistryAPI` answers every path below ``/v2/`` (one catch-all route, because
repository names contain slashes; :func:`~pipeline.registry.names.parse_api_path` splits
them) and, with token auth, ``/token``. :func:`registry_routes` hands those routes to a
bigger application (``berth serve``); :func:`create_registry_app` wraps them into a
standalone one that also sweeps expired uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from pipeline.logs import get_logger
from pipeline.registry.access import DELETE, PULL, PUSH, Access
from pipeline.registry.api import blobs, listing, manifests, uploads
from pipeline.registry.api.context import Call, RegistryContext
from pipeline.registry.api.responses import error_response, json_response
from pipeline.registry.api.token import issue_token
from pipeline.registry.auth import TOKEN_PATH, Authenticator, NoAuth, Principal, TokenService
from pipeline.registry.config import RegistryConfig
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.names import Endpoint, check_name, parse_api_path
from pipeline.registry.storage import RegistryStorage

log = get_logger("registry")

Handler = Callable[[RegistryContext, Call], Awaitable[Response]]

WRITE = (PULL, PUSH)
# (endpoint, method) -> handler and the actions it needs on the repository
ROUTES: dict[tuple[Endpoint, str], tuple[Handler, tuple[str, ...]]] = {
    (Endpoint.BLOB, "GET"): (blobs.get_blob, (PULL,)),
    (Endpoint.BLOB, "HEAD"): (blobs.head_blob, (PULL,)),
    (Endpoint.BLOB, "DELETE"): (blobs.delete_blob, (DELETE,)),
    (Endpoint.UPLOAD, "POST"): (uploads.start_upload, WRITE),
    (Endpoint.UPLOAD, "PATCH"): (uploads.patch_upload, WRITE),
    (Endpoint.UPLOAD, "PUT"): (uploads.finish_upload, WRITE),
    (Endpoint.UPLOAD, "GET"): (uploads.upload_status, WRITE),
    (Endpoint.UPLOAD, "DELETE"): (uploads.cancel_upload, WRITE),
    (Endpoint.MANIFEST, "GET"): (manifests.get_manifest, (PULL,)),
    (Endpoint.MANIFEST, "HEAD"): (manifests.get_manifest, (PULL,)),
    (Endpoint.MANIFEST, "PUT"): (manifests.put_manifest, WRITE),
    (Endpoint.MANIFEST, "DELETE"): (manifests.delete_manifest, (DELETE,)),
    (Endpoint.TAGS, "GET"): (listing.list_tags, (PULL,)),
    (Endpoint.REFERRERS, "GET"): (listing.list_referrers, (PULL,)),
}


def _not_allowed(endpoint: Endpoint, method: str) -> DistributionError:
    allowed = sorted(m for (e, m) in ROUTES if e is endpoint) or list(_FIXED[endpoint])
    return DistributionError(
        ErrorCode.UNSUPPORTED,
        {"reason": f"{method} is not supported here", "allowed": allowed},
        headers={"Allow": ", ".join(allowed)},
    )


# the endpoints that are not per repository, and their methods
_FIXED = {Endpoint.BASE: ("GET", "HEAD"), Endpoint.CATALOG: ("GET",)}


class RegistryAPI:
    """The distribution API over a storage and an authenticator."""

    def __init__(
        self,
        storage: RegistryStorage,
        auth: Authenticator | None = None,
        config: RegistryConfig | None = None,
        token_service: TokenService | None = None,
    ) -> None:
        self.ctx = RegistryContext(
            storage=storage,
            auth=auth or NoAuth(),
            config=config or RegistryConfig(),
            token_service=token_service,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry of ``/v2/...``: every method reaches :meth:`handle`, so even an
        unknown one is answered with a spec error rather than Starlette's plain 405."""
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        """Answer one request below ``/v2/`` (every failure as a spec error document)."""
        try:
            return await self._dispatch(request)
        except DistributionError as exc:
            return error_response(exc)
        except Exception:
            log.exception("registry request failed", extra={"fields": {"path": request.url.path}})
            return error_response(
                DistributionError(
                    ErrorCode.UNKNOWN, {"reason": "internal error; see the server log"}
                )
            )

    async def token(self, request: Request) -> Response:
        try:
            return await issue_token(self.ctx, request)
        except DistributionError as exc:
            return error_response(exc)

    async def _authenticate(self, request: Request, needed: Access | None) -> Principal:
        return await self.ctx.blocking(
            self.ctx.auth.authenticate,
            request.headers.get("authorization"),
            needed,
            self.ctx.base_url(request),
        )

    async def _dispatch(self, request: Request) -> Response:
        method = request.method
        parsed = parse_api_path(request.path_params.get("path", ""))
        if parsed is None:
            raise DistributionError(
                ErrorCode.UNSUPPORTED,
                {"reason": f"no API endpoint at {request.url.path}"},
                status=404,
            )
        if parsed.endpoint in _FIXED and method not in _FIXED[parsed.endpoint]:
            raise _not_allowed(parsed.endpoint, method)
        if parsed.endpoint is Endpoint.BASE:
            await self._authenticate(request, None)
            return json_response({})
        if parsed.endpoint is Endpoint.CATALOG:
            await self._authenticate(request, Access.catalog())
            return await listing.catalog(self.ctx, request)
        name = check_name(parsed.name)
        route = ROUTES.get((parsed.endpoint, method))
        if route is None or (method == "DELETE" and not self.ctx.config.delete_enabled):
            raise _not_allowed(parsed.endpoint, method)
        handler, actions = route
        principal = await self._authenticate(request, Access.repository(name, *actions))
        return await handler(self.ctx, Call(request, principal, name, parsed.reference))

    async def sweep_forever(self) -> None:
        """Remove expired upload sessions every ``sweep_interval`` seconds."""
        while True:
            try:
                removed = await self.ctx.blocking(self.ctx.storage.sweep_uploads)
                if removed:
                    log.info("removed expired uploads", extra={"fields": {"count": removed}})
            except Exception:
                log.exception("sweeping expired uploads failed")
            await anyio.sleep(self.ctx.config.sweep_interval)


def registry_routes(api: RegistryAPI) -> list[BaseRoute]:
    """The routes to include in an application: ``/v2/...`` and, with token auth, ``/token``."""
    routes: list[BaseRoute] = [Route("/v2", api), Route("/v2/{path:path}", api)]
    if api.ctx.token_service is not None:
        routes.append(Route(TOKEN_PATH, api.token, methods=["GET", "POST"]))
    return routes


def create_registry_app(
    storage: RegistryStorage,
    auth: Authenticator | None = None,
    config: RegistryConfig | None = None,
    token_service: TokenService | None = None,
    *,
    sweep: bool = True,
) -> Starlette:
    """A standalone registry application (see the module docstring)."""
    api = RegistryAPI(storage, auth, config, token_service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(api.sweep_forever()) if sweep else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(routes=registry_routes(api), lifespan=lifespan)
    app.state.registry = api
    return app
