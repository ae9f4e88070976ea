"""The build cache: entries only for finished blobs, LRU pruning, berth cache prune."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.build.cache import BuildCache, CachedLayer
from pipeline.cli.main import main
from runners.oci import mediatypes
from runners.oci.digest import Digest

pytestmark = pytest.mark.unit


def _layer(cache: BuildCache, key: str, size: int, age: float) -> CachedLayer:
    data = os.urandom(size)
    digest = cache.images.write_blob(data)
    layer = CachedLayer(digest, size, Digest.of(data), mediatypes.OCI_LAYER_GZIP)
    cache.record(key, layer)
    os.utime(cache.steps_dir / f"{key}.json", (age, age))
    return layer


def test_lookup_misses_when_the_blob_is_gone(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    layer = _layer(cache, "k", 100, 1000)
    assert cache.lookup("k") == layer
    cache.images.blob_path(layer.digest).unlink()
    assert cache.lookup("k") is None
    assert not (cache.steps_dir / "k.json").exists()


def test_prune_evicts_least_recently_used_first(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    old = _layer(cache, "old", 200_000, 1000)
    new = _layer(cache, "new", 200_000, 3000)
    cache.lookup("new")
    result = cache.prune(cache.size() - 100_000)
    assert result.steps == 1
    assert not cache.images.has_blob(old.digest)
    assert cache.images.has_blob(new.digest)
    assert cache.lookup("new") == new


def test_cli_prune_empties_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = BuildCache(tmp_path)
    layer = _layer(cache, "k", 1000, 1000)
    assert main(["cache", "prune", "--cache-dir", str(tmp_path)]) == 0
    assert "removed 1 steps, 1 blobs" in capsys.readouterr().out
    assert cache.lookup("k") is None
    assert not cache.images.has_blob(layer.digest)


def test_prune_if_full_only_prunes_above_the_cap(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path, max_bytes=10_000_000)
    _layer(cache, "k", 100_000, 1000)
    assert cache.prune_if_full() is None
    small = BuildCache(tmp_path, max_bytes=1000)
    result = small.prune_if_full()
    assert result is not None
    assert result.steps == 1
