"""The control plane's application factory: one Starlette app for ``berth serve``.

It serves ``/healthz``, ``/metrics``, the embedded OCI registry at ``/v2/``, the webhook
endpoints (``/hooks/...``), the chat slash commands (``/hooks/slack``,
``/hooks/mattermost``), the REST API (``/api/v1``, with the deploy endpoints) and the
dashboard (``/``, read access with an API token: :mod:`pipeline.web`). Its
lifespan recovers builds a previous life left behind, starts the build workers, the
scheduler and delivery (gates, rollouts, release feed, notifications: see
:mod:`pipeline.delivery`), and on shutdown stops them and lets running builds finish
(or marks them interrupted).
Objects are built by the caller (``berth serve`` through :func:`plane_from_settings`) and
passed in; nothing happens at import.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.api.auth import ApiCredential, TokenAuth
from pipeline.api.routes import RestAPI
from pipeline.chatops.notify import Poster
from pipeline.delivery import Delivery, DeployBackend, Engine, SwitchBackend, delivery_from_settings
from pipeline.git import GitMirror, GitRemote
from pipeline.hooks.endpoint import HookTarget, WebhookHandler
from pipeline.logs import secret_filter
from pipeline.metrics import Metrics
from pipeline.promote.gates import GateRunner, ProcessGateRunner
from pipeline.queue.builder import ImageBuilder
from pipeline.queue.job import BuildJob, WatchedApp
from pipeline.queue.logs import BuildLogs
from pipeline.queue.service import BuildService
from pipeline.queue.workers import BuildWorkers, WorkerSettings
from pipeline.registry.api.app import RegistryAPI, registry_routes
from pipeline.scheduler import Scheduler
from pipeline.secrets import Secrets
from pipeline.settings import Settings
from pipeline.store import BuildState, Release, Store
from pipeline.web import HostInventory, StoreDashboardSource, TrafficCounters, web_routes
from runners.oci.auth import Credentials, CredentialStore
from runners.oci.client import RegistryClient, RegistryOptions


@dataclass(frozen=True)
class ControlPlane:
    """The parts ``berth serve`` wires together."""

    store: Store
    version: str
    registry: RegistryAPI | None = None
    metrics: Metrics | None = None
    hooks: WebhookHandler | None = None
    api: RestAPI | None = None
    workers: BuildWorkers | None = None
    scheduler: Scheduler | None = None
    delivery: Delivery | None = None
    web: tuple[BaseRoute, ...] = ()
    """The dashboard's routes; mounted last, as they take ``/``."""


def _store_ok(store: Store) -> bool:
    try:
        store.list_apps()
    except Exception:
        return False
    return True


def _queued(store: Store) -> int:
    try:
        return len(store.list_builds(state=BuildState.QUEUED, limit=1000))
    except Exception:
        return 0


def create_app(plane: ControlPlane) -> Starlette:
    """The control plane's Starlette application."""
    metrics = plane.metrics or Metrics(plane.version)
    store_up = metrics.store_up
    metrics.set_queue_depth_source(lambda: _queued(plane.store))

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
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if plane.registry is not None:
        routes += registry_routes(plane.registry)
    if plane.delivery is not None:
        # before the git webhooks, whose /hooks/{provider} would take /hooks/slack
        routes += plane.delivery.routes()
    if plane.hooks is not None:
        routes += plane.hooks.routes()
    if plane.api is not None:
        routes += plane.api.routes()
    routes += plane.web

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = []
        if plane.registry is not None:
            tasks.append(asyncio.get_running_loop().create_task(plane.registry.sweep_forever()))
        if plane.workers is not None:
            await asyncio.to_thread(plane.workers.recover)
            plane.workers.start()
        if plane.scheduler is not None:
            plane.scheduler.start()
        if plane.delivery is not None:
            await asyncio.to_thread(plane.delivery.start)
        try:
            yield
        finally:
            if plane.delivery is not None:
                await asyncio.to_thread(plane.delivery.stop)
            if plane.scheduler is not None:
                await asyncio.to_thread(plane.scheduler.stop)
            if plane.workers is not None:
                await asyncio.to_thread(plane.workers.stop)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return Starlette(routes=routes, lifespan=lifespan)


@dataclass(frozen=True)
class PlaneOptions:
    """Knobs of :func:`plane_from_settings` that the service config does not carry."""

    workers: int | None = None
    """Concurrent builds (default: one per CPU)."""
    supersede: bool = True
    """A newer commit skips the app's still-queued builds."""
    graceful: float = 30.0
    """Seconds running builds get to finish on shutdown."""
    poll: bool = True
    """Run the scheduler's git polls."""
    cache_dir: Path | None = None
    """The Dockerfile builder's cache and local image store (default: DATA/build-cache)."""
    backend: DeployBackend | None = None
    """Where promotions roll out (default: :class:`~pipeline.delivery.SwitchBackend`,
    releases switch at once without hosts)."""
    engine: Engine | None = None
    """The backend's reconcile loop, started and stopped with the control plane."""
    gate_runner: GateRunner | None = None
    """Runs functional-gate containers (default: a local process)."""
    poster: Poster | None = None
    """Posts chat outcomes and notifications (default: plain HTTPS with retries)."""
    traffic: TrafficCounters | None = None
    """The routers' live connection counters, for the dashboard's rollouts."""
    inventory: HostInventory | None = None
    """The hosts' instances, for the dashboard's host list."""


def _external_registry_host(url: str) -> str:
    """``host[:port]`` of a configured registry URL (``https://host:port/...``)."""
    return url.split("://", 1)[1].split("/", 1)[0]


def image_registry(settings: Settings, listen: Sequence[tuple[str, int]]) -> str:
    """``host:port`` (or host) of the registry builds push to: the embedded one on the
    first listen address, or the configured external one."""
    if settings.registry.url is not None:
        return _external_registry_host(settings.registry.url)
    host, port = listen[0]
    if host in ("0.0.0.0", ""):  # noqa: S104 - reaching our own wildcard listener
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def plane_from_settings(
    settings: Settings,
    secrets: Secrets,
    store: Store,
    *,
    version: str,
    listen: Sequence[tuple[str, int]],
    registry: RegistryAPI | None = None,
    builder: ImageBuilder | None = None,
    client: RegistryClient | None = None,
    options: PlaneOptions | None = None,
) -> ControlPlane:
    """Wire every part of ``berth serve`` from the service config.

    ``builder`` defaults to the Dockerfile builder; ``client`` (the registry client the
    default builder pushes with) to one that reaches ``settings.registry``.
    """
    opts = options or PlaneOptions()
    metrics = Metrics(version)
    data = settings.data_dir
    apps: dict[str, WatchedApp] = {}
    targets: dict[str, HookTarget] = {}
    for app in settings.apps:
        remote = (
            GitRemote(app.repo) if app.repo is not None else GitRemote.local(Path(str(app.path)))
        )
        mirror = GitMirror(data / "git" / f"{app.name}.git", remote)
        apps[app.name] = WatchedApp(app.name, app.branch, mirror, app.spec)
        if app.webhook is not None:
            targets[app.name] = HookTarget(
                app.name, app.webhook.provider, secrets[app.webhook.secret], remote.url, app.branch
            )
    registry_host = image_registry(settings, listen)
    namespace = settings.registry.namespace

    def image_ref(app: str, commit: str) -> str:
        return f"{registry_host}/{namespace}/{app}:{commit}"

    if builder is None:
        from pipeline.queue.dockerfile import DockerfileImageBuilder

        builder = DockerfileImageBuilder(
            client or registry_client(settings, secrets),
            cache_dir=opts.cache_dir or data / "build-cache",
        )
    job = BuildJob(
        store,
        apps,
        builder,
        BuildLogs(data / "builds" / "logs"),
        data / "builds" / "work",
        image_ref,
        settings=settings,
    )
    worker_settings = WorkerSettings(graceful=opts.graceful)
    if opts.workers is not None:
        worker_settings = WorkerSettings(workers=opts.workers, graceful=opts.graceful)
    workers = BuildWorkers(store, job, settings=worker_settings, metrics=metrics)
    service = BuildService(store, apps, workers, supersede=opts.supersede)
    service.register_apps()
    intervals = {app.name: app.poll_interval for app in settings.apps}

    def image_at_digest(release: Release) -> str:
        return f"{registry_host}/{namespace}/{release.app}@{release.digest}"

    delivery = delivery_from_settings(
        settings,
        secrets,
        store,
        backend=opts.backend or SwitchBackend(store),
        gate_runner=opts.gate_runner or ProcessGateRunner(),
        image_reference=image_at_digest,
        mask=secret_filter.mask,
        engine=opts.engine,
        poster=opts.poster,
    )
    auth = TokenAuth(
        ApiCredential(t.name, secrets[t.token], frozenset(t.scopes)) for t in settings.api_tokens
    )
    api = RestAPI(
        service,
        auth,
        job.logs,
        version=version,
        intervals=intervals,
        hooks=targets,
        workers=workers,
        extensions=[delivery.api],
    )
    scheduler = Scheduler(service, intervals, metrics=metrics) if opts.poll else None
    dashboard = StoreDashboardSource(
        store,
        promotion=delivery.service,
        logs=job.logs,
        traffic=opts.traffic,
        inventory=opts.inventory,
    )
    return ControlPlane(
        store,
        version,
        registry,
        metrics=metrics,
        hooks=WebhookHandler(service, list(targets.values()), metrics=metrics),
        api=api,
        workers=workers,
        scheduler=scheduler,
        delivery=delivery,
        web=tuple(web_routes(dashboard, auth)),
    )


def registry_client(settings: Settings, secrets: Secrets) -> RegistryClient:
    """A registry client for the registry builds push to."""
    explicit: dict[str, Credentials] = {}
    insecure: set[str] = set()
    if settings.registry.url is not None:
        host = _external_registry_host(settings.registry.url)
        username, password = settings.registry.username, settings.registry.password
        if username is not None and password is not None:
            explicit[host] = Credentials(secrets[username].reveal(), secrets[password].reveal())
        if settings.registry.insecure:
            insecure.add(host)
    return RegistryClient(
        RegistryOptions(insecure_hosts=frozenset(insecure)), CredentialStore(explicit)
    )
