"""Malicious layers: every escape attempt is refused and nothing lands outside the layer."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from runners.errors import LayerError
from runners.runtime.unpack import UnpackOptions, unpack_layer
from tests.runtime.tars import Entry, layer_tar

# unpacking sets owners and makes device nodes: root only
pytestmark = pytest.mark.privileged


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every path below ``root`` with its content (files) or link target (symlinks)."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "dir"
    return found


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A directory beside the store that a malicious layer tries to write into."""
    directory = tmp_path / "sentinel"
    directory.mkdir()
    (directory / "keep").write_bytes(b"original")
    return directory


def _attempt(tmp_path: Path, sentinel: Path, *entries: Entry) -> LayerError:
    store = tmp_path / "store"
    store.mkdir()
    before = _tree(sentinel)
    with pytest.raises(LayerError) as caught:
        unpack_layer(io.BytesIO(layer_tar(*entries)), store / "layer")
    # nothing written outside, nothing half-unpacked left visible, no staging debris
    assert _tree(sentinel) == before
    assert list(store.iterdir()) == []
    assert not (tmp_path / "x").exists()
    return caught.value


def test_dotdot_entry_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(tmp_path, sentinel, Entry("../../sentinel/x", data=b"pwned"))
    assert "'../../sentinel/x'" in str(error)
    assert "'..'" in str(error)


def test_dotdot_inside_a_name_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(tmp_path, sentinel, Entry("a/../../../sentinel/x", data=b"pwned"))
    assert "a/../../../sentinel/x" in str(error)


def test_absolute_entry_is_refused(tmp_path: Path, sentinel: Path) -> None:
    target = f"{sentinel}/x"
    error = _attempt(tmp_path, sentinel, Entry("ok", data=b"fine"), Entry(target, data=b"pwned"))
    assert repr(target) in str(error)
    assert "absolute" in str(error)


def test_etc_absolute_entry_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(tmp_path, sentinel, Entry("/etc/berth-test-x", data=b"pwned"))
    assert "/etc/berth-test-x" in str(error)
    assert not Path("/etc/berth-test-x").exists()


def test_write_through_a_symlink_to_root_is_refused(tmp_path: Path, sentinel: Path) -> None:
    # The link itself is harmless in the container (absolute = container root); the file
    # written "through" it on the host is what must never happen.
    error = _attempt(
        tmp_path,
        sentinel,
        Entry("evil", "symlink", link="/"),
        Entry("evil/" + str(sentinel).lstrip("/") + "/x", data=b"pwned"),
    )
    assert "'evil' is a symlink" in str(error)


def test_write_through_a_symlink_to_the_sentinel_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(
        tmp_path,
        sentinel,
        Entry("evil", "symlink", link=str(sentinel)),
        Entry("evil/x", data=b"pwned"),
    )
    assert "evil/x" in str(error)
    assert "symlink" in str(error)


def test_directory_replaced_by_symlink_then_written_through_is_refused(
    tmp_path: Path, sentinel: Path
) -> None:
    error = _attempt(
        tmp_path,
        sentinel,
        Entry("d", "dir"),
        Entry("d/a", data=b"ok"),
        Entry("d", "symlink", link=str(sentinel)),
        Entry("d/x", data=b"pwned"),
    )
    assert "d/x" in str(error)


def test_relative_symlink_climbing_out_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(tmp_path, sentinel, Entry("up", "symlink", link="../../sentinel"))
    assert "'up'" in str(error)
    assert "climbs above the layer root" in str(error)


def test_hardlink_to_etc_passwd_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(tmp_path, sentinel, Entry("passwd", "hardlink", link="/etc/passwd"))
    assert "'passwd'" in str(error)
    assert "/etc/passwd" in str(error)


def test_hardlink_climbing_out_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(tmp_path, sentinel, Entry("k", "hardlink", link="../../sentinel/keep"))
    assert "outside the layer" in str(error)


def test_hardlink_through_a_symlink_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(
        tmp_path,
        sentinel,
        Entry("s", "symlink", link=str(sentinel)),
        Entry("k", "hardlink", link="s/keep"),
    )
    assert "'k'" in str(error)


def test_hardlinked_symlink_then_write_through_it_is_refused(
    tmp_path: Path, sentinel: Path
) -> None:
    error = _attempt(
        tmp_path,
        sentinel,
        Entry("a", "symlink", link=str(sentinel)),
        Entry("b", "hardlink", link="a"),
        Entry("b/x", data=b"pwned"),
    )
    assert "b/x" in str(error)


@pytest.mark.parametrize(
    ("kind", "device", "word"),
    [("chr", (1, 3), "device node"), ("blk", (7, 0), "device node"), ("fifo", (0, 0), "FIFO")],
)
def test_devices_and_fifos_are_refused(
    tmp_path: Path, sentinel: Path, kind: str, device: tuple[int, int], word: str
) -> None:
    error = _attempt(tmp_path, sentinel, Entry("dev/thing", kind, device=device))
    assert "'dev/thing'" in str(error)
    assert word in str(error)


@pytest.mark.parametrize("reverse", [False, True])
def test_symlink_chain_escaping_is_refused(tmp_path: Path, sentinel: Path, reverse: bool) -> None:
    # d/l1 -> ..       resolves to the layer root: fine on its own
    # d/l2 -> l1/..    lexically "d", but following l1 first it is the root's parent
    links = [Entry("d/l1", "symlink", link=".."), Entry("d/l2", "symlink", link="l1/..")]
    if reverse:
        links.reverse()
    error = _attempt(tmp_path, sentinel, Entry("d", "dir"), *links)
    assert "'d/l2'" in str(error)


def test_long_symlink_loop_is_refused(tmp_path: Path, sentinel: Path) -> None:
    error = _attempt(
        tmp_path, sentinel, Entry("a", "symlink", link="b"), Entry("b", "symlink", link="a")
    )
    assert "chain of more than" in str(error)


def test_devices_are_accepted_when_allowed(tmp_path: Path) -> None:
    dest = tmp_path / "layer"
    tar = layer_tar(Entry("null", "chr", device=(1, 3), mode=0o666), Entry("pipe", "fifo"))
    unpack_layer(io.BytesIO(tar), dest, UnpackOptions(allow_devices=True))
    info = (dest / "null").lstat()
    assert (os.major(info.st_rdev), os.minor(info.st_rdev)) == (1, 3)
    assert oct(info.st_mode & 0o7777) == oct(0o666)
    assert Path(dest / "pipe").is_fifo()


def test_absolute_symlink_inside_the_image_is_accepted(tmp_path: Path) -> None:
    dest = tmp_path / "layer"
    tar = layer_tar(
        Entry("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o755),
        Entry("bin", "symlink", link="/usr/bin"),
        Entry("etc/localtime", "symlink", link="../usr/share/zoneinfo/UTC"),
    )
    unpack_layer(io.BytesIO(tar), dest)
    assert os.readlink(dest / "bin") == "/usr/bin"
    assert os.readlink(dest / "etc/localtime") == "../usr/share/zoneinfo/UTC"


@pytest.mark.parametrize("name", ["etc/.wh.", "etc/.wh..", "etc/.wh..."])
def test_whiteouts_of_nothing_or_of_a_parent_are_refused(
    tmp_path: Path, sentinel: Path, name: str
) -> None:
    error = _attempt(tmp_path, sentinel, Entry(name))
    assert "a whiteout must name an entry" in str(error)
