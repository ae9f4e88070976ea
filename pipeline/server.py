"""The control plane's application factory: one Starlette app for ``berth serve``.

It holds what the control plane serves today — ``/healthz``, ``/metrics`` and the
embedded OCI registry at ``/v2/`` — and grows with the API, webhooks and dashboard.
Objects are built by the caller (the CLI) and passed in; nothing happens at import.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.registry.api.app import RegistryAPI, registry_routes
from pipeline.store import Store


@dataclass(frozen=True)
class ControlPlane:
    """The parts ``berth serve`` wires together."""

    store: Store
    version: str
    registry: RegistryAPI | None = None


def _store_ok(store: Store) -> bool:
    try:
        store.list_apps()
    except Exception:
        return False
    return True


def create_app(plane: ControlPlane) -> Starlette:
    """The control plane's Starlette application."""
    metrics = CollectorRegistry()
    Info("berth", "berth's version", registry=metrics).info({"version": plane.version})
    store_up = Gauge("berth_store_up", "1 when the state store answers", registry=metrics)

    async def healthz(request: Request) -> Response:
        ok = await asyncio.to_thread(_store_ok, plane.store)
        store_up.set(1 if ok else 0)
        body = {
            "status": "ok" if ok else "degraded",
            "version": plane.version,
            "store": "ok" if ok else "unreachable",
            "registry": "embedded" if plane.registry is not None else "external",
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        store_up.set(1 if await asyncio.to_thread(_store_ok, plane.store) else 0)
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if plane.registry is not None:
        routes += registry_routes(plane.registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = []
        if plane.registry is not None:
            tasks.append(asyncio.get_running_loop().create_task(plane.registry.sweep_forever()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return Starlette(routes=routes, lifespan=lifespan)
