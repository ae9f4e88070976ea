"""The layer store: one unpack per digest, whoever asks and however many at once."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runners.errors import DigestError, RuntimeFailure
from runners.oci.digest import Digest
from runners.runtime.compression import Readable
from runners.runtime.layers import LayerStore
from runners.runtime.unpack import UnpackOptions
from tests.helpers.procs import ProcessLauncher, wait_until
from tests.runtime.tars import Entry, gzipped, layer_tar

pytestmark = pytest.mark.privileged

TAR = layer_tar(Entry("etc/os-release", data=b"ID=test\n"), Entry("bin", "dir"))


class CountingOpener:
    """Opens ``data`` and counts how often it was asked to; may hold readers at a gate."""

    def __init__(self, data: bytes, gate: threading.Event | None = None) -> None:
        self.data = data
        self.gate = gate
        self.calls = 0
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self) -> Iterator[Readable]:
        with self._lock:
            self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(timeout=30)
        yield io.BytesIO(self.data)


def test_a_layer_is_unpacked_once(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    opener = CountingOpener(TAR)
    digest = Digest.of(TAR)
    first = store.ensure_layer(digest, opener)
    second = store.ensure_layer(digest, opener)
    assert first == second == tmp_path / "layers" / "sha256" / digest.hex
    assert opener.calls == 1
    assert (first / "etc/os-release").read_bytes() == b"ID=test\n"
    assert store.has(digest)
    assert store.digests() == [digest]


def test_the_compressed_digest_names_a_layer_too(tmp_path: Path) -> None:
    packed = gzipped(TAR)
    store = LayerStore(tmp_path)
    path = store.ensure_layer(Digest.of(packed), CountingOpener(packed))
    assert (path / "etc/os-release").exists()


def test_concurrent_callers_wait_for_one_unpack(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    gate = threading.Event()
    opener = CountingOpener(TAR, gate)
    digest = Digest.of(TAR)
    results: list[Path] = []

    def ask() -> None:
        results.append(store.ensure_layer(digest, opener))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    wait_until(lambda: opener.calls == 1, timeout=30)
    time.sleep(0.2)  # let the other five queue up behind the unpack
    gate.set()
    for thread in threads:
        thread.join(timeout=30)
    assert opener.calls == 1
    assert results == [store.path_of(digest)] * 6


def test_two_processes_unpack_a_layer_once(tmp_path: Path, launcher: ProcessLauncher) -> None:
    blob = tmp_path / "blob.tar"
    blob.write_bytes(TAR)
    opened = tmp_path / "opened.log"
    script = f"""
import sys, time
from pathlib import Path
from runners.oci.digest import Digest
from runners.runtime.layers import LayerStore

def opener():
    with open({str(opened)!r}, "a") as log:
        log.write("opened\\n")
    time.sleep(0.5)  # hold the lock long enough for the other process to queue
    return open({str(blob)!r}, "rb")

LayerStore(Path({str(tmp_path / "store")!r})).ensure_layer(Digest.parse(sys.argv[1]), opener)
"""
    procs = [
        launcher.start([sys.executable, "-c", script, str(Digest.of(TAR))], name=f"p{i}")
        for i in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, launcher.log_of(proc)
    assert opened.read_text() == "opened\n"
    assert LayerStore(tmp_path / "store").digests() == [Digest.of(TAR)]


def test_content_that_does_not_match_the_digest_is_not_kept(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    claimed = Digest.of(b"another layer")
    with pytest.raises(DigestError, match=str(claimed)):
        store.ensure_layer(claimed, CountingOpener(TAR))
    assert not store.has(claimed)
    assert store.digests() == []
    assert sorted(p.name for p in (tmp_path / "layers" / "sha256").iterdir()) == []


def test_remove_and_debris_of_a_killed_unpack(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    digest = Digest.of(TAR)
    path = store.ensure_layer(digest, CountingOpener(TAR))
    assert store.remove(digest)
    assert not path.exists()
    assert not store.remove(digest)
    debris = path.with_name(f".{digest.hex}.abc.partial")
    (debris / "half").mkdir(parents=True)
    store.ensure_layer(digest, CountingOpener(TAR))
    assert not debris.exists()
    assert store.digests() == [digest]


def test_a_store_keeps_one_id_mapping(tmp_path: Path) -> None:
    LayerStore(tmp_path, UnpackOptions(uid_shift=100000, gid_shift=100000)).ensure_layer(
        Digest.of(TAR), CountingOpener(TAR)
    )
    other = LayerStore(tmp_path)
    other_tar = layer_tar(Entry("x", data=b"x"))
    with pytest.raises(RuntimeFailure, match="'100000:100000' but this host uses '0:0'"):
        other.ensure_layer(Digest.of(other_tar), CountingOpener(other_tar))
    shifted = tmp_path / "layers" / "sha256" / Digest.of(TAR).hex
    assert shifted.stat().st_uid == 100000


def test_lock_files_and_markers_do_not_count_as_layers(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    store.ensure_layer(Digest.of(TAR), CountingOpener(TAR))
    assert sorted(os.listdir(tmp_path / "layers")) == [".locks", "idmap", "sha256"]
    assert store.digests() == [Digest.of(TAR)]
