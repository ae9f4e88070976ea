"""Overlay root filesystems over shared layer directories."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from runners.errors import RuntimeFailure
from runners.runtime.bundle import ContainerDir
from runners.runtime.rootfs import mount_rootfs, mounted_at, unmount_rootfs
from runners.runtime.unpack import unpack_layer
from tests.runtime.tars import Entry, layer_tar

pytestmark = pytest.mark.privileged


def _layer(root: Path, name: str, *entries: Entry) -> Path:
    dest = root / "layers" / name
    unpack_layer(io.BytesIO(layer_tar(*entries)), dest)
    return dest


def _container(root: Path, name: str) -> tuple[Path, Path, Path]:
    paths = tuple(root / name / part for part in ("upper", "work", "rootfs"))
    for path in paths:
        path.mkdir(parents=True)
    return paths  # type: ignore[return-value]


@pytest.fixture
def layers(tmp_path: Path) -> list[Path]:
    """Two layers, topmost first: the top one changes, adds and deletes base files."""
    base = _layer(
        tmp_path,
        "base",
        Entry("etc/motd", data=b"base motd\n"),
        Entry("etc/secret", data=b"remove me\n"),
        Entry("opt/cache/old", data=b"old\n"),
        Entry("bin/tool", data=b"tool\n", mode=0o755),
    )
    top = _layer(
        tmp_path,
        "top",
        Entry("etc/motd", data=b"top motd\n"),
        Entry("etc/.wh.secret"),
        Entry("opt/cache/.wh..wh..opq"),
        Entry("opt/cache/new", data=b"new\n"),
    )
    return [top, base]


def test_two_containers_share_lower_inodes_and_keep_writes_apart(
    no_leaks: None, tmp_path: Path, layers: list[Path]
) -> None:
    upper_a, work_a, root_a = _container(tmp_path, "a")
    upper_b, work_b, root_b = _container(tmp_path, "b")
    mount_rootfs(layers, upper_a, work_a, root_a)
    try:
        mount_rootfs(layers, upper_b, work_b, root_b)
        try:
            lower_inode = (layers[1] / "bin/tool").stat().st_ino
            assert (root_a / "bin/tool").stat().st_ino == lower_inode
            assert (root_b / "bin/tool").stat().st_ino == lower_inode

            (root_a / "written").write_text("only a\n")
            (root_a / "bin/tool").write_text("changed in a\n")
            assert (upper_a / "written").read_text() == "only a\n"
            assert (upper_a / "bin/tool").read_text() == "changed in a\n"
            assert not (root_b / "written").exists()
            assert (root_b / "bin/tool").read_text() == "tool\n"
            assert os.listdir(upper_b) == []
            # the shared layer itself never changes
            assert (layers[1] / "bin/tool").read_text() == "tool\n"
            assert not (layers[0] / "written").exists()
        finally:
            unmount_rootfs(root_b)
    finally:
        unmount_rootfs(root_a)


def test_top_layer_wins_and_whiteouts_hide_lower_files(
    no_leaks: None, tmp_path: Path, layers: list[Path]
) -> None:
    upper, work, root = _container(tmp_path, "c")
    mount_rootfs(layers, upper, work, root)
    try:
        assert (root / "etc/motd").read_text() == "top motd\n"
        assert not (root / "etc/secret").exists()
        assert sorted(os.listdir(root / "etc")) == ["motd"]
        # the opaque directory shows only the top layer's content
        assert os.listdir(root / "opt/cache") == ["new"]
        assert mounted_at(root)
    finally:
        unmount_rootfs(root)
    assert not mounted_at(root)
    assert str(root) not in Path("/proc/self/mounts").read_text()
    assert os.listdir(root) == []


def test_many_layers_in_deep_directories_exceed_a_page_and_still_mount(
    no_leaks: None, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 100) / ("e" * 100)
    count = 60  # 60 x ~270 characters of absolute paths: four times the page size
    lowers = []
    for i in range(count):
        lowers.append(
            _layer(
                deep,
                f"{i:02d}-" + "x" * 64,
                Entry(f"f{i}", data=f"{i}\n".encode()),
                Entry("which", data=f"{i}\n".encode()),
            )
        )
    assert len(":".join(str(p) for p in lowers)) > 4 * os.sysconf("SC_PAGE_SIZE")
    upper, work, root = _container(tmp_path, "many")
    lowers.reverse()  # topmost (the last built) first
    mount_rootfs(lowers, upper, work, root)
    try:
        assert (root / "f0").read_text() == "0\n"
        assert (root / f"f{count - 1}").read_text() == f"{count - 1}\n"
        assert (root / "which").read_text() == f"{count - 1}\n"
    finally:
        unmount_rootfs(root)
    assert not mounted_at(root)


def test_unmount_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "never-mounted"
    target.mkdir()
    unmount_rootfs(target)
    assert not mounted_at(target)


def test_mount_failure_names_the_target(no_leaks: None, tmp_path: Path, layers: list[Path]) -> None:
    upper, _, root = _container(tmp_path, "bad")
    with pytest.raises(RuntimeFailure, match=f"at {root}"):
        mount_rootfs(layers, upper, tmp_path / "missing-work", root)
    assert not mounted_at(root)


def test_a_container_directory_is_not_removed_while_mounted(
    no_leaks: None, tmp_path: Path, layers: list[Path]
) -> None:
    bundle = ContainerDir(tmp_path / "c")
    bundle.create()
    mount_rootfs(layers, bundle.upper, bundle.work, bundle.rootfs)
    try:
        with pytest.raises(RuntimeFailure, match="still mounted"):
            bundle.remove()
        assert (bundle.rootfs / "etc/motd").exists()
    finally:
        unmount_rootfs(bundle.rootfs)
    bundle.remove()
    assert not bundle.path.exists()
