"""``berth serve``: the control plane."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli.version import berth_version
from pipeline.errors import BerthError

if TYPE_CHECKING:
    from pipeline.promote.agentrunner import AgentGateRunner
    from pipeline.rollout.hosts import HostDirectory
    from pipeline.rollout.nftrouter import Router
    from pipeline.rollout.service import RolloutService
    from pipeline.secrets import Secrets
    from pipeline.settings import Settings
    from pipeline.store import Release, Store
    from pipeline.web import InstanceView

DEFAULT_CONFIG = Path("config/berth.yml")
DEFAULT_CLUSTER_DIR = Path("/var/lib/berth/clusters/local")


@dataclass
class EngineParts:
    """The rollout engine on hosts, and what ``berth serve`` must add for it."""

    service: RolloutService
    hosts: HostDirectory
    router: Router
    listen: list[tuple[str, int]]
    """Extra addresses to listen on, so the hosts reach the embedded registry."""


def _engine_parts(
    settings: Settings,
    secrets: Secrets,
    store: Store,
    *,
    cluster_dir: Path,
    listen: list[tuple[str, int]],
) -> EngineParts | None:
    """The engine for ``cluster:`` (from ``berth cluster up``'s host list) or ``hosts:``;
    None, with a warning, when the cluster is not up."""
    from pipeline.rollout.entry import EntryAddresses
    from pipeline.rollout.hosts import HostDirectory
    from pipeline.rollout.nftrouter import NftRouter
    from pipeline.rollout.service import RolloutService
    from pipeline.server import image_registry
    from runners.clusterstate import HOSTS_FILE, load_state

    registry, extra = image_registry(settings, listen), []
    entries = None
    if settings.cluster is not None:
        hosts_file = cluster_dir / HOSTS_FILE
        state = load_state(cluster_dir)
        if not hosts_file.is_file() or state is None:
            click.echo(
                f"berth serve: warning: no cluster in {cluster_dir} (run berth cluster up "
                f"--hosts {settings.cluster.hosts}, or pass --cluster-dir); until then "
                "promotions switch releases without containers",
                err=True,
            )
            return None
        hosts = HostDirectory.from_hosts_file(hosts_file)
        entries = EntryAddresses.for_cluster(cluster_dir)
        if settings.registry.embedded:
            gateway = str(state.plan.gateway.ip)
            registry = f"{gateway}:{listen[0][1]}"
            extra = [(gateway, listen[0][1])]
    else:
        assert settings.hosts is not None
        tokens = {h.name: secrets[h.token].reveal() for h in settings.hosts if h.token}
        hosts = HostDirectory.from_settings(settings.hosts, tokens)
    namespace = settings.registry.namespace

    def image_reference(release: Release) -> str:
        return f"{registry}/{namespace}/{release.app}@{release.digest}"

    router = NftRouter()
    # the environments' secrets reach the agents in the instance spec, nothing else
    service = RolloutService(
        store,
        settings,
        hosts,
        router,
        image_reference=image_reference,
        entries=entries,
        secrets=secrets,
    )
    return EngineParts(service, hosts, router, extra)


class RouterTraffic:
    """The dashboard's :class:`~pipeline.web.TrafficCounters`: new connections per
    release, from the router's counters."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def connections(self, app: str, env: str) -> dict[int, int]:
        return {release: c[0] for release, c in self._router.connections(app, env).items()}


class AgentInventory:
    """The dashboard's :class:`~pipeline.web.HostInventory`: each agent's instance list."""

    def __init__(self, hosts: HostDirectory) -> None:
        self._hosts = hosts

    def instances(self) -> dict[str, list[InstanceView]]:
        from pipeline.rollout.instances import APP_LABEL, ENV_LABEL, RELEASE_LABEL
        from pipeline.web import InstanceView

        def listing(name: str) -> list[InstanceView]:
            found = []
            for item in self._hosts.client(name).instances():
                labels = item.get("labels") or {}
                release = str(labels.get(RELEASE_LABEL, ""))
                health = item.get("health")
                found.append(
                    InstanceView(
                        id=str(item["id"]),
                        app=str(labels.get(APP_LABEL, "")),
                        env=str(labels.get(ENV_LABEL, "")),
                        release=int(release) if release.isdigit() else None,
                        state=str(item.get("state", "")),
                        healthy={"healthy": True, "unhealthy": False}.get(str(health)),
                    )
                )
            return found

        names = self._hosts.names
        return dict(zip(names, self._hosts.map(listing, names), strict=True))


def _gate_runner(parts: EngineParts) -> AgentGateRunner:
    """Functional gates run on a host of the environment, through its agent."""
    from pipeline.promote.agentrunner import AgentGateRunner, GateHost

    hosts = parts.hosts
    return AgentGateRunner(
        [
            GateHost(name, hosts.client(name), dict(hosts.entries[name].labels))
            for name in hosts.names
        ]
    )


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r}: use HOST:PORT, e.g. 127.0.0.1:8420")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The service config.",
)
@click.option(
    "--listen",
    "listen",
    multiple=True,
    help="HOST:PORT to listen on instead of the config's listen addresses (repeatable).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Builds run at once (default: one per CPU).",
)
@click.option(
    "--no-supersede",
    is_flag=True,
    help="Build every pushed commit, not only the newest queued one of a branch.",
)
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds running builds get to finish on SIGTERM before they are marked interrupted.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BERTH_CACHE_DIR",
    default=None,
    help="Build cache and local base images (default: DATA_DIR/build-cache; "
    "fill it with berth image base/import --cache-dir).",
)
@click.option(
    "--cluster-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BERTH_CLUSTER_DIR",
    default=DEFAULT_CLUSTER_DIR,
    show_default=True,
    help="With cluster: in the config, the data directory of berth cluster up (its hosts.json).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path,
    listen: tuple[str, ...],
    workers: int | None,
    no_supersede: bool,
    graceful_timeout: float,
    cache_dir: Path | None,
    cluster_dir: Path,
) -> None:
    """Run the control plane: webhooks (/hooks/...), the REST API (/api/v1), build
    workers, git polls, the embedded registry at /v2/, /healthz and /metrics.

    Secrets named by the config are read first; an unset environment variable or a
    missing file stops the start with a message naming it. Builds a killed predecessor
    left running are retried. Stop with Ctrl-C or SIGTERM: running builds get
    --graceful-timeout seconds, then are marked interrupted and retried on the next start.
    """
    from pipeline.httpserve import serve as serve_http
    from pipeline.logs import get_logger, secret_filter
    from pipeline.queue.lock import DataDirLock
    from pipeline.registry.api.app import RegistryAPI
    from pipeline.registry.fs import FilesystemRegistryStorage
    from pipeline.server import PlaneOptions, create_app, plane_from_settings
    from pipeline.settings import load_settings, resolve_secrets
    from pipeline.store import Store

    if not config_path.is_file():
        raise BerthError(
            f"{config_path}: no such file; pass --config FILE (config/berth.yml is the default)"
        )
    settings = load_settings(config_path)
    secrets = resolve_secrets(settings, os.environ)
    secret_filter.register(secrets.revealed_values())

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BerthError(
            f"{settings.source}: data_dir: cannot create {settings.data_dir}: {exc.strerror}"
        ) from exc
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    store = Store.open(settings.store_url)
    registry = None
    if settings.registry.embedded:
        registry = RegistryAPI(FilesystemRegistryStorage(settings.data_dir / "registry"))

    addresses = [_parse_listen(a) for a in listen] or [
        (address.host, address.port) for address in settings.listen
    ]
    parts = _engine_parts(settings, secrets, store, cluster_dir=cluster_dir, listen=addresses)
    if parts is not None:
        addresses += [a for a in parts.listen if a not in addresses]
    plane = plane_from_settings(
        settings,
        secrets,
        store,
        version=berth_version(),
        listen=addresses,
        registry=registry,
        options=PlaneOptions(
            workers=workers,
            supersede=not no_supersede,
            graceful=graceful_timeout,
            cache_dir=cache_dir,
            backend=parts.service if parts is not None else None,
            engine=parts.service if parts is not None else None,
            gate_runner=_gate_runner(parts) if parts is not None else None,
            traffic=RouterTraffic(parts.router) if parts is not None else None,
            inventory=AgentInventory(parts.hosts) if parts is not None else None,
        ),
    )
    if parts is not None and plane.delivery is not None:
        # the engine reports an environment at 100 % healthy; promotion runs its gate
        parts.service.on_reached = plane.delivery.service.environment_reached
    verbose = ctx.find_root().params.get("verbose", 0) > 0
    log = get_logger("serve")
    for host, port in addresses:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        click.echo(f"berth serve: listening on http://{shown}", err=True)
        if registry is not None:
            click.echo(f"berth serve: embedded registry at http://{shown}/v2/", err=True)
    log.info("starting", extra={"fields": {"config": str(config_path), "store": store.backend}})
    try:
        serve_http(
            create_app(plane),
            addresses,
            verbose=verbose,
            graceful_timeout=graceful_timeout + 5,
        )
    finally:
        if parts is not None:
            parts.hosts.close()
        store.close()
        lock.release()
    click.echo("berth serve: stopped", err=True)
