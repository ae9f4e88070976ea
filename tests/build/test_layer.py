"""Deterministic layer tars: same input, same bytes; metadata normalised."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from runners.oci.layer import EntryKind, LayerEntry, tree_entries, write_layer

pytestmark = pytest.mark.unit


def _tree(root: Path) -> None:
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"content")
    os.link(root / "dir" / "file", root / "dir" / "hard")
    (root / "link").symlink_to("/etc/passwd")
    os.chmod(root / "dir" / "file", 0o4755)  # noqa: S103 -- setuid must survive
    os.utime(root / "dir" / "file", (4_000_000_000, 4_000_000_000))


def test_same_tree_in_two_places_gives_the_same_digests(tmp_path: Path) -> None:
    digests = []
    for name in ("one", "two"):
        root = tmp_path / name
        _tree(root)
        out = io.BytesIO()
        result = write_layer(tree_entries(root, epoch=1000), out)
        assert hashlib.sha256(out.getvalue()).hexdigest() == result.digest.hex
        assert hashlib.sha256(gzip.decompress(out.getvalue())).hexdigest() == result.diff_id.hex
        digests.append(result.digest)
    assert digests[0] == digests[1]


def test_entries_are_normalised(tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    out = io.BytesIO()
    write_layer(tree_entries(tmp_path / "t", epoch=1000), out)
    data = out.getvalue()
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert not data[3] & 0x08  # no file name in the gzip header
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["dir", "dir/file", "dir/hard", "link"]
    assert members["dir/file"].mtime == 1000  # clamped
    assert members["dir/file"].mode == 0o4755
    assert members["dir/hard"].islnk()
    assert members["dir/hard"].linkname == "dir/file"
    assert members["link"].linkname == "/etc/passwd"
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert all(
        "atime" not in m.pax_headers and "ctime" not in m.pax_headers for m in members.values()
    )


def test_whiteouts_opaque_markers_and_capabilities() -> None:
    capability = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    entries = [
        LayerEntry("bin", EntryKind.DIR, mode=0o755),
        LayerEntry(
            "bin/ping",
            EntryKind.FILE,
            mode=0o755,
            data=b"x",
            size=1,
            xattrs={"security.capability": capability},
        ),
        LayerEntry("etc", EntryKind.OPAQUE),
        LayerEntry("gone", EntryKind.WHITEOUT),
    ]
    out = io.BytesIO()
    write_layer(entries, out)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(out.getvalue()))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"bin", "bin/ping", "etc/.wh..wh..opq", ".wh.gone"}
    value = members["bin/ping"].pax_headers["SCHILY.xattr.security.capability"]
    assert value.encode("utf-8", "surrogateescape") == capability
