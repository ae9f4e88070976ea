"""A COPY layer's in-memory index answers lookups exactly as its unpacked directory does."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from pipeline.build.cache import BuildCache
from pipeline.build.lowers import LayerIndex, LowerView, Member, Prefetcher, layer_members
from runners.errors import LayerError
from runners.oci import mediatypes
from runners.oci.digest import Digest
from runners.oci.layer import EntryKind, LayerEntry, LayerWriter, source_identity, write_layer
from runners.oci.manifest import Descriptor
from runners.runtime.unpack import unpack_layer, write_members

pytestmark = pytest.mark.unit

PATHS = ["etc", "etc/passwd", "app", "app/bin", "app/bin/tool", "app/link", "app/hard",
         "app/bin/tool/x", "missing", "etc/group", "base-only", "app/base-only"]  # fmt: skip


def _entries(source: Path) -> list[LayerEntry]:
    source.write_text("from the context\n")
    return [
        LayerEntry("app", EntryKind.DIR, mode=0o750, uid=7, gid=8, mtime=100),
        LayerEntry("app/bin", EntryKind.DIR, mode=0o755, mtime=100),
        LayerEntry("app/bin/tool", EntryKind.FILE, mode=0o4755, size=17, source=source),
        LayerEntry("app/hard", EntryKind.HARDLINK, linkname="app/bin/tool"),
        LayerEntry("app/link", EntryKind.SYMLINK, mode=0o777, linkname="bin/tool"),
        LayerEntry("etc", EntryKind.DIR, mode=0o755, mtime=50),
        LayerEntry("etc/passwd", EntryKind.FILE, mode=0o644, size=25, data=b"root:x:0:0::/root:/bin/sh\n"[:25]),
    ]  # fmt: skip


def _base(root: Path) -> Path:
    base = root / "base"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "passwd").write_text("old:x:1:1::/:/bin/false\n")
    (base / "etc" / "group").write_text("root:x:0:\n")
    (base / "base-only").write_text("b\n")
    (base / "app").mkdir()
    (base / "app" / "base-only").write_text("a\n")
    return base


def test_index_and_unpacked_layer_agree(tmp_path: Path) -> None:
    entries = _entries(tmp_path / "tool-source")
    blob = io.BytesIO()
    write_layer(entries, blob)
    blob.seek(0)
    unpacked = unpack_layer(blob, tmp_path / "unpacked").path
    index = LayerIndex.from_entries(entries)
    assert index is not None
    base = _base(tmp_path)
    on_disk, in_memory = LowerView([base, unpacked]), LowerView([base, index])
    for rel in PATHS:
        want, got = on_disk.lstat(rel), in_memory.lstat(rel)
        assert (want is None) == (got is None), rel
        if want is not None and got is not None:
            assert stat.S_IFMT(got.st_mode) == stat.S_IFMT(want.st_mode), rel
            assert stat.S_IMODE(got.st_mode) == stat.S_IMODE(want.st_mode), rel
            assert (got.st_uid, got.st_gid) == (want.st_uid, want.st_gid), rel
            if stat.S_ISREG(want.st_mode):
                assert got.st_size == want.st_size, rel
        assert in_memory.read_text(rel) == on_disk.read_text(rel), rel
        assert in_memory.is_dir(rel) == on_disk.is_dir(rel), rel
    # the layer's passwd hides the base's; the base's group shows through
    assert in_memory.read_text("etc/passwd") == "root:x:0:0::/root:/bin/sh"
    assert in_memory.read_text("etc/group") == "root:x:0:\n"


def test_layers_with_whiteouts_are_not_indexed() -> None:
    whiteout = LayerEntry("gone", EntryKind.WHITEOUT)
    assert LayerIndex.from_entries([whiteout]) is None


def _tree(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        body = ""
        if stat.S_ISREG(info.st_mode):
            body = path.read_bytes().hex()
        elif stat.S_ISLNK(info.st_mode):
            body = os.readlink(path)
        found[str(path.relative_to(root))] = (
            info.st_mode, info.st_uid, info.st_gid, int(info.st_mtime), body
        )  # fmt: skip
    return found


def test_a_layer_written_from_its_entries_equals_the_unpacked_blob(tmp_path: Path) -> None:
    entries = _entries(tmp_path / "tool-source")
    identities = {tmp_path / "tool-source": source_identity((tmp_path / "tool-source").stat())}
    blob = io.BytesIO()
    writer = LayerWriter(blob, identities)
    for entry in entries:
        writer.add(entry)
    writer.finish()
    blob.seek(0)
    unpacked = unpack_layer(blob, tmp_path / "unpacked").path
    members = layer_members(entries, identities)
    assert members is not None
    staged = tmp_path / "staged"
    staged.mkdir()
    assert write_members(members, staged) == len(entries)
    assert _tree(staged) == _tree(unpacked)
    assert (staged / "app" / "hard").stat().st_ino == (staged / "app/bin/tool").stat().st_ino


def test_a_source_changed_since_copy_selected_it_is_refused_by_both_writers(
    tmp_path: Path,
) -> None:
    source = tmp_path / "tool-source"
    entries = _entries(source)
    identities = {source: source_identity(source.stat())}
    source.write_text("rewritten, same size\n"[:17])
    os.utime(source, ns=(1, 1))
    members = layer_members(entries, identities)
    assert members is not None
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(LayerError, match="changed while the build ran"):
        write_members(members, staged)
    writer = LayerWriter(io.BytesIO(), identities)
    tool = next(entry for entry in entries if entry.source == source)
    with pytest.raises(LayerError, match="changed while the build ran"):
        writer.add(tool)


def test_members_of_streamed_entries_are_not_offered() -> None:
    streamed = LayerEntry("a", EntryKind.FILE, size=1, reader=lambda: io.BytesIO(b"x"))
    assert layer_members([streamed], {}) is None


class _HeldReader(io.BytesIO):
    """A source whose first read waits for ``go``: holds a directory write mid-way."""

    def __init__(self, data: bytes, go: threading.Event) -> None:
        super().__init__(data)
        self.go = go

    def read(self, size: int | None = -1, /) -> bytes:
        assert self.go.wait(30), "the test never let the writer go on"
        return super().read(size)


def test_a_run_waits_for_the_directory_being_written_instead_of_unpacking_again(
    tmp_path: Path,
) -> None:
    # the blob says "blob", the directory being written from the entries says "entries":
    # whichever is filed first becomes the layer's directory, so it tells who made it
    cache = BuildCache(tmp_path / "cache")
    with cache.new_blob() as (path, keep), open(path, "wb") as out:
        made = write_layer([LayerEntry("f", EntryKind.FILE, mode=0o644, size=4, data=b"blob")], out)
        keep.append(made.digest)
    layer = Descriptor(mediatypes.OCI_LAYER_GZIP, made.digest, made.size)
    go = threading.Event()
    info = tarfile.TarInfo("f")
    info.size, info.mode = 7, 0o644
    members: list[Member] = [(info, lambda: _HeldReader(b"entries", go))]
    digest: Future[Digest] = Future()
    digest.set_result(made.digest)
    prefetch = Prefetcher(cache)
    try:
        prefetch.write(members, digest)
        with ThreadPoolExecutor(1) as pool:
            found = pool.submit(prefetch.unpacked, [layer])
            # give an unpack of the blob every chance to go first; it must not
            wait([found], timeout=0.5)
            go.set()
            (directory,) = found.result(timeout=30)
        assert (directory / "f").read_bytes() == b"entries"
    finally:
        go.set()
        prefetch.close()
