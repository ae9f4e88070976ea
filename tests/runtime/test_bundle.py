"""A container's directory: layout, its files and modes, refusal to reuse or remove early."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from runners.errors import RuntimeFailure
from runners.runtime.bundle import ContainerDir, ExitRecord, default_hosts

pytestmark = pytest.mark.unit


def test_layout_and_modes(tmp_path: Path) -> None:
    bundle = ContainerDir(tmp_path / "c1")
    bundle.create()
    assert sorted(os.listdir(bundle.path)) == [
        "etc", "rootfs", "stderr.log", "stdout.log", "upper", "work"
    ]  # fmt: skip
    assert stat.S_IMODE(bundle.path.stat().st_mode) == 0o711
    assert stat.S_IMODE(bundle.work.stat().st_mode) == 0o700
    assert stat.S_IMODE(bundle.stdout_log.stat().st_mode) == 0o640
    assert bundle.etc_files().hosts == str(tmp_path / "c1/etc/hosts")


def test_layer_and_state_directories_apart(tmp_path: Path) -> None:
    bundle = ContainerDir(tmp_path / "disk/c1", tmp_path / "run/c1")
    bundle.create()
    # what outlives a reboot on disk; what a start writes in the state directory
    assert sorted(os.listdir(bundle.path)) == ["stderr.log", "stdout.log", "upper", "work"]
    assert sorted(os.listdir(bundle.state)) == ["etc", "rootfs"]
    assert stat.S_IMODE(bundle.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(bundle.state.stat().st_mode) == 0o711
    bundle.write_config({"n": 1})
    bundle.write_exit(ExitRecord(code=0, started=True))
    for path in (bundle.config, bundle.exit_file, bundle.gate, bundle.shim_pid, bundle.rootfs):
        assert path.parent == bundle.state
    for path in (bundle.upper, bundle.work, bundle.stdout_log, bundle.stderr_log):
        assert path.parent == bundle.path
    assert bundle.etc_files().hosts == str(tmp_path / "run/c1/etc/hosts")


def test_either_half_left_counts_and_is_removed(tmp_path: Path) -> None:
    bundle = ContainerDir(tmp_path / "disk/c1", tmp_path / "run/c1")
    assert not bundle.exists()
    bundle.create_state()  # a creation cut short between the two
    assert bundle.exists()
    with pytest.raises(RuntimeFailure, match="already exists"):
        bundle.create_state()
    bundle.remove()
    assert not bundle.exists()
    bundle.create_layer()
    assert bundle.exists()
    with pytest.raises(RuntimeFailure, match="already exists"):
        ContainerDir(tmp_path / "disk/c1", tmp_path / "run/other").create()
    bundle.remove()
    assert not (tmp_path / "disk/c1").exists()
    assert not (tmp_path / "run/c1").exists()


def test_a_directory_is_never_reused(tmp_path: Path) -> None:
    ContainerDir(tmp_path / "c1").create()
    with pytest.raises(RuntimeFailure, match="already exists"):
        ContainerDir(tmp_path / "c1").create()


def test_config_and_etc_files(tmp_path: Path) -> None:
    bundle = ContainerDir(tmp_path / "c1")
    bundle.create()
    bundle.write_config({"ociVersion": "1.0.2", "hostname": "web-1"})
    assert bundle.read_config() == {"ociVersion": "1.0.2", "hostname": "web-1"}
    assert stat.S_IMODE(bundle.config.stat().st_mode) == 0o600
    bundle.write_etc(
        hostname="web-1", hosts=default_hosts("web-1"), resolv_conf="nameserver 10.0.0.1\n"
    )
    assert (bundle.etc / "hostname").read_text() == "web-1\n"
    assert "127.0.1.1\tweb-1\n" in (bundle.etc / "hosts").read_text()
    assert stat.S_IMODE((bundle.etc / "resolv.conf").stat().st_mode) == 0o644
    # no staging files behind
    assert sorted(os.listdir(bundle.etc)) == ["hostname", "hosts", "resolv.conf"]


def test_files_keep_their_modes_under_any_umask_and_can_be_written_again(
    tmp_path: Path,
) -> None:
    bundle = ContainerDir(tmp_path / "c1")
    bundle.create()
    old = os.umask(0o077)  # a strict umask would hide /etc/hosts from the container's root
    try:
        bundle.write_etc(hostname="a", hosts="h1\n", resolv_conf="r1\n")
        bundle.write_config({"n": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((bundle.etc / "hosts").stat().st_mode) == 0o644
    assert stat.S_IMODE(bundle.config.stat().st_mode) == 0o600
    first = (bundle.etc / "hosts").stat().st_ino
    # written again: replaced whole (a new file), never rewritten in place
    bundle.write_etc(hostname="b", hosts="h2\n", resolv_conf="r2\n")
    bundle.write_config({"n": 2})
    assert (bundle.etc / "hosts").read_text() == "h2\n"
    assert (bundle.etc / "hosts").stat().st_ino != first
    assert bundle.read_config() == {"n": 2}
    assert sorted(os.listdir(bundle.etc)) == ["hostname", "hosts", "resolv.conf"]


def test_exit_record_round_trip(tmp_path: Path) -> None:
    bundle = ContainerDir(tmp_path / "c1")
    bundle.create()
    assert bundle.read_exit() is None
    bundle.write_exit(ExitRecord(code=137, started=True))
    assert bundle.read_exit() == ExitRecord(code=137, started=True)
    assert json.loads(bundle.exit_file.read_text()) == {
        "exit_code": 137,
        "started": True,
        "error": "",
    }


def test_remove(tmp_path: Path) -> None:
    bundle = ContainerDir(tmp_path / "c1")
    bundle.create()
    bundle.remove()
    assert not bundle.path.exists()
