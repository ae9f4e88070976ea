"""``berth serve``: the control plane."""

from __future__ import annotations

import os
from pathlib import Path

import click

from pipeline.cli.version import berth_version
from pipeline.errors import BerthError

DEFAULT_CONFIG = Path("config/berth.yml")


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
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path,
    listen: tuple[str, ...],
    workers: int | None,
    no_supersede: bool,
    graceful_timeout: float,
    cache_dir: Path | None,
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
        ),
    )
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
        store.close()
        lock.release()
    click.echo("berth serve: stopped", err=True)
