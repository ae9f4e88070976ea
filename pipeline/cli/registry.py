"""``berth registry``: run the embedded OCI registry standalone, collect garbage, pin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.cli.context import CLIContext, emit_json, json_option

_ROOT = click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The registry's storage directory (created when missing).",
)
_EXISTING_ROOT = click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The registry's storage directory.",
)


class Duration(click.ParamType[float]):
    """``90s``, ``30m``, ``1h``, ``2d``."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        from pipeline.units import UnitError, parse_duration

        try:
            return parse_duration(str(value)).total_seconds()
        except UnitError as exc:
            self.fail(str(exc), param, ctx)


def _digest(value: str) -> Any:
    from runners.errors import DigestError
    from runners.oci.digest import Digest

    try:
        return Digest.parse(value)
    except DigestError as exc:
        raise click.BadParameter(str(exc)) from exc


def _repository(value: str) -> str:
    from pipeline.registry.names import is_valid_name

    if not is_valid_name(value):
        raise click.BadParameter(f"{value!r} is not a valid repository name")
    return value


@click.group()
def registry() -> None:
    """Run or maintain the embedded OCI registry."""


@registry.command()
@click.option(
    "--listen", default="127.0.0.1:5000", show_default=True, help="HOST:PORT to listen on."
)
@_ROOT
@click.option(
    "--auth",
    "auth_mode",
    type=click.Choice(["none", "basic", "token"]),
    default=None,
    help="How callers authenticate [default: basic with --htpasswd, else none].",
)
@click.option(
    "--htpasswd",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Users and bcrypt hashes (htpasswd -B).",
)
@click.option(
    "--acl",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="YAML rules: identity -> repository globs -> actions.",
)
@click.option(
    "--allow",
    multiple=True,
    metavar="IDENTITY:GLOB:ACTIONS",
    help="An ACL rule, e.g. hosts:apps/**:pull (repeatable; added to --acl).",
)
@click.option(
    "--token-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Token signing key [default: ROOT/token.key, created on first start].",
)
@click.option("--token-ttl", type=Duration(), default="5m", show_default=True)
@click.option("--service", default="berth", show_default=True, help="Token auth service name.")
@click.option(
    "--upload-ttl",
    type=Duration(),
    default="1h",
    show_default=True,
    help="Upload sessions idle this long expire.",
)
@click.option("--max-blob-size", type=int, default=None, help="Refuse bigger blobs (bytes).")
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow --auth none on an address other than loopback (anyone could push).",
)
@click.pass_obj
def serve(
    obj: CLIContext,
    listen: str,
    root: Path,
    auth_mode: str | None,
    htpasswd: Path | None,
    acl: Path | None,
    allow: tuple[str, ...],
    token_key: Path | None,
    token_ttl: float,
    service: str,
    upload_ttl: float,
    max_blob_size: int | None,
    insecure: bool,
) -> None:
    """Serve the OCI distribution API (/v2/) until SIGTERM."""
    from pipeline.httpserve import serve as serve_http
    from pipeline.registry.access import load_acl, parse_allow
    from pipeline.registry.config import RegistryConfig
    from pipeline.registry.server import (
        AuthMode,
        RegistryOptions,
        build_registry,
        is_loopback,
        parse_listen,
    )

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    mode = AuthMode(auth_mode or ("basic" if htpasswd else "none"))
    if mode is AuthMode.NONE and not is_loopback(host) and not insecure:
        raise click.UsageError(
            f"--auth none on {host} lets anyone on the network push and delete; "
            "use --auth basic/token with --htpasswd, or pass --insecure"
        )
    options = RegistryOptions(
        root=root,
        auth=mode,
        htpasswd=htpasswd,
        acl=load_acl(acl) if acl else None,
        extra_rules=tuple(parse_allow(rule) for rule in allow),
        token_key=token_key,
        token_ttl=token_ttl,
        service=service,
        upload_ttl=upload_ttl,
        config=RegistryConfig(max_blob_size=max_blob_size),
    )
    serve_http(
        build_registry(options), [(host, port)], verbose=obj is not None and obj.verbosity > 0
    )


@registry.command()
@_EXISTING_ROOT
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option(
    "--grace",
    type=Duration(),
    default="1h",
    show_default=True,
    help="Never delete anything written or used more recently than this.",
)
@json_option
def gc(root: Path, dry_run: bool, grace: float, as_json: bool) -> None:
    """Delete untagged manifests and unreferenced blobs older than the grace period."""
    from pipeline.registry.fs import FilesystemRegistryStorage
    from pipeline.registry.gc import apply_gc, plan_gc

    storage = FilesystemRegistryStorage(root)
    plan = plan_gc(storage.inventory(), storage.clock.now(), grace)
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, "plan": plan.to_json()})
            return
        click.echo(
            f"would delete {len(plan.manifests)} manifests, {len(plan.links)} blob links and "
            f"{len(plan.blobs)} blobs ({plan.bytes_freed} bytes); "
            f"keeping {plan.kept_manifests} manifests and {plan.kept_blobs} blobs"
        )
        for repository, digest in plan.manifests:
            click.echo(f"  manifest {repository}@{digest}")
        for digest, size in plan.blobs:
            click.echo(f"  blob     {digest} ({size} bytes)")
        return
    result = apply_gc(storage, plan)
    if as_json:
        emit_json({"dry_run": False, "plan": plan.to_json(), "result": result.to_json()})
        return
    click.echo(
        f"deleted {result.deleted_manifests} manifests, {result.deleted_links} blob links and "
        f"{result.deleted_blobs} blobs ({result.bytes_freed} bytes)"
        + (f"; {result.skipped} items changed meanwhile and were kept" if result.skipped else "")
    )


@registry.command()
@_EXISTING_ROOT
@click.argument("repository")
@click.argument("digest")
@click.option("--reason", default="pinned by hand", show_default=True)
@json_option
def pin(root: Path, repository: str, digest: str, reason: str, as_json: bool) -> None:
    """Keep REPOSITORY@DIGEST (and what it references) from garbage collection."""
    from pipeline.registry.fs import FilesystemRegistryStorage

    made = FilesystemRegistryStorage(root).pin(_repository(repository), _digest(digest), reason)
    if as_json:
        emit_json(made.to_json())
    else:
        click.echo(f"pinned {made.repository}@{made.digest}")


@registry.command()
@_EXISTING_ROOT
@click.argument("repository")
@click.argument("digest")
def unpin(root: Path, repository: str, digest: str) -> None:
    """Let garbage collection consider REPOSITORY@DIGEST again."""
    from pipeline.errors import RegistryServerError
    from pipeline.registry.fs import FilesystemRegistryStorage

    if not FilesystemRegistryStorage(root).unpin(_repository(repository), _digest(digest)):
        raise RegistryServerError(f"{repository}@{digest} is not pinned in {root}")
    click.echo(f"unpinned {repository}@{digest}")


@registry.command()
@_EXISTING_ROOT
@json_option
def pins(root: Path, as_json: bool) -> None:
    """List pinned manifests and blobs."""
    from pipeline.registry.fs import FilesystemRegistryStorage

    found = FilesystemRegistryStorage(root).list_pins()
    if as_json:
        emit_json([p.to_json() for p in found])
        return
    for item in found:
        click.echo(f"{item.repository}@{item.digest}  {item.reason}")
