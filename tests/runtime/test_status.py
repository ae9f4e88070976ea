"""Observing a container from its directory: the pid is believed only in the spec's cgroup."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runners.runtime.bundle import ContainerDir
from runners.runtime.oci_runtime import ContainerState, RuncRuntime, RuntimeCommands

pytestmark = pytest.mark.integration


def _own_cgroup() -> str:
    # the cgroup2 line, or the last v1 line: a path this process is in
    return Path("/proc/self/cgroup").read_text().splitlines()[-1].split(":", 2)[2]


def _config(bundle: ContainerDir, cgroups_path: str) -> None:
    staged = bundle.path / "config.json.tmp"
    staged.write_text(json.dumps({"linux": {"cgroupsPath": cgroups_path}}))
    os.replace(staged, bundle.config)  # as write_config does: a new file each time


def test_a_pid_counts_only_in_the_cgroup_the_current_config_names(tmp_path: Path) -> None:
    bundle = ContainerDir(tmp_path / "c")
    bundle.path.mkdir()
    bundle.container_pid.write_text(f"{os.getpid()}\n")
    runtime = RuncRuntime(RuntimeCommands(root=str(tmp_path / "state")))
    _config(bundle, _own_cgroup())
    assert runtime.status("c", bundle).state is ContainerState.RUNNING
    # the config is read once per version of the file: a new one is read again
    _config(bundle, "/berth-no-such-cgroup/with/a/longer/path")
    assert runtime.status("c", bundle).state is ContainerState.ABSENT
    _config(bundle, _own_cgroup())
    assert runtime.status("c", bundle).state is ContainerState.RUNNING
    bundle.config.write_text("{not json")
    assert runtime.status("c", bundle).state is ContainerState.ABSENT
    bundle.config.unlink()
    assert runtime.status("c", bundle).state is ContainerState.ABSENT
