"""Command lines and mount options are built without I/O; pin them exactly."""

from __future__ import annotations

import pytest

from runners.errors import RuntimeFailure
from runners.runtime.oci_runtime import RuntimeCommands
from runners.runtime.rootfs import MAX_LAYERS, mount_command, overlay_options

pytestmark = pytest.mark.unit


def test_runc_run_command() -> None:
    commands = RuntimeCommands(root="/run/berth/runc")
    assert commands.run("web-1", "/c/web-1", "/c/web-1/container.pid", "/c/web-1/runtime.log") == [
        "runc",
        "--root",
        "/run/berth/runc",
        "--log",
        "/c/web-1/runtime.log",
        "--log-format",
        "json",
        "run",
        "--bundle",
        "/c/web-1",
        "--pid-file",
        "/c/web-1/container.pid",
        "web-1",
    ]


def test_runc_lifecycle_commands() -> None:
    commands = RuntimeCommands()
    assert commands.state("web-1") == ["runc", "state", "web-1"]
    assert commands.kill("web-1", 15) == ["runc", "kill", "web-1", "15"]
    assert commands.delete("web-1") == ["runc", "delete", "--force", "web-1"]
    assert commands.list() == ["runc", "list", "--format", "json"]


def test_crun_on_a_hybrid_host_hides_the_cgroup2_mount_only_for_run() -> None:
    commands = RuntimeCommands.crun("/run/berth/crun", hybrid_cgroups=True)
    assert commands.hide_unified_cgroup is True
    # state, kill and delete work as they are; only the supervisor's run needs the mount gone
    assert commands.kill("a", 9) == ["crun", "--root", "/run/berth/crun", "kill", "a", "9"]
    assert commands.run("a", "/c/a", "/c/a/pid", "/c/a/log")[:3] == [
        "crun",
        "--root",
        "/run/berth/crun",
    ]
    plain = RuntimeCommands.crun(hybrid_cgroups=False)
    assert plain.hide_unified_cgroup is False
    assert plain.delete("a") == ["crun", "delete", "--force", "a"]
    assert RuntimeCommands().hide_unified_cgroup is False


def test_overlay_options_list_the_top_layer_first() -> None:
    assert overlay_options(["/l/top", "/l/base"], "/c/upper", "/c/work") == (
        "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
    )


def test_mount_command() -> None:
    assert mount_command("lowerdir=/a,upperdir=/u,workdir=/w", "/c/rootfs") == [
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        "lowerdir=/a,upperdir=/u,workdir=/w",
        "/c/rootfs",
    ]


@pytest.mark.parametrize("bad", ["/l/a:b", "/l/a,b", "/l/a\\b"])
def test_paths_overlay_cannot_carry_are_refused(bad: str) -> None:
    with pytest.raises(RuntimeFailure, match="overlay mount options cannot carry"):
        overlay_options([bad], "/u", "/w")


def test_layer_count_limits() -> None:
    with pytest.raises(RuntimeFailure, match="at least one layer"):
        overlay_options([], "/u", "/w")
    with pytest.raises(RuntimeFailure, match=f"overlayfs stacks at most {MAX_LAYERS}"):
        overlay_options([f"/l/{i}" for i in range(MAX_LAYERS + 1)], "/u", "/w")
