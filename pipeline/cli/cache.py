"""``berth cache``: the build cache and local image store."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.build import cache_dir_option, default_cache_dir, parse_size
from pipeline.cli.context import emit_json, json_option


@click.group()
def cache() -> None:
    """Inspect and prune the build cache."""


@cache.command()
@cache_dir_option
@click.option("--max-size", default=None, help="Prune least recently used steps down to this size.")
@click.option("--all", "everything", is_flag=True, help="Also drop imported and built images.")
@json_option
def prune(cache_dir: Path | None, max_size: str | None, everything: bool, as_json: bool) -> None:
    """Empty the build cache (or shrink it to --max-size)."""
    from pipeline.build.cache import BuildCache

    store = BuildCache(cache_dir or default_cache_dir())
    limit = parse_size(max_size) if max_size is not None else 0
    result = store.prune(limit, everything=everything)
    data = {
        "steps": result.steps,
        "blobs": result.blobs,
        "layers": result.layers,
        "freedBytes": result.freed_bytes,
    }
    if as_json:
        emit_json(data)
        return
    click.echo(
        f"removed {result.steps} steps, {result.blobs} blobs, {result.layers} unpacked layers;"
        f" freed {result.freed_bytes} bytes"
    )


@cache.command()
@cache_dir_option
@json_option
def du(cache_dir: Path | None, as_json: bool) -> None:
    """Show how much disk the build cache uses."""
    from pipeline.build.cache import BuildCache

    store = BuildCache(cache_dir or default_cache_dir())
    size = store.size() if store.root.exists() else 0
    if as_json:
        emit_json({"path": str(store.root), "bytes": size})
        return
    click.echo(f"{store.root}: {size} bytes")
