"""Real containers: runc under the supervisor, on overlay root filesystems, user-namespaced."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runners.errors import RuntimeFailure, SubprocessError
from runners.runtime import shim
from runners.runtime.bundle import ContainerDir
from runners.runtime.host import is_hybrid_cgroup_host
from runners.runtime.layers import LayerStore
from runners.runtime.oci_runtime import ContainerState, RuncRuntime, RuntimeCommands
from runners.runtime.rootfs import mounted_at, unmount_rootfs
from runners.runtime.spec import Resources
from tests.helpers.procs import wait_until
from tests.runtime.containers import CGROUP_PARENT, SHIFT, Containers, containers_with

pytestmark = pytest.mark.privileged


def _lines(bundle: ContainerDir, count: int) -> list[str]:
    """The first ``count`` lines of the container's stdout, once they are there."""
    wait_until(lambda: len(bundle.stdout_log.read_text().splitlines()) >= count, timeout=15)
    return bundle.stdout_log.read_text().splitlines()[:count]


def _alive(pid: int) -> bool:
    """Running (a zombie is not: reaping a re-parented supervisor is init's job)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_output_and_exit_code_are_collected(no_leaks: None, containers: Containers) -> None:
    cid, bundle = containers.prepare("exit3", ("/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"))
    containers.runtime.start(cid, bundle)
    status = containers.runtime.wait(cid, bundle, timeout=15)
    assert status.state is ContainerState.STOPPED
    assert status.exit_code == 3
    assert status.started
    assert bundle.stdout_log.read_text() == "hi\n"
    assert bundle.stderr_log.read_text() == "oops\n"


def test_namespaces_ids_and_limits(no_leaks: None, containers: Containers) -> None:
    cid, bundle = containers.prepare(
        "inside",
        ("/bin/sh", "-c", "hostname; echo $$; id -u; cat /etc/hostname; sleep 30"),
        resources=Resources(memory_bytes=48 << 20, pids_limit=64),
    )
    running = containers.runtime.start(cid, bundle)
    assert running.state is ContainerState.RUNNING
    assert running.pid is not None
    hostname, pid_inside, uid_inside, etc_hostname = _lines(bundle, 4)
    assert hostname == cid
    assert etc_hostname == cid
    assert pid_inside == "1"
    assert uid_inside == "0"
    # the same process, seen from the host, is the unprivileged shifted user
    assert _host_uid(running.pid) == SHIFT.host_uid
    cgroup = Path("/sys/fs/cgroup/memory") / CGROUP_PARENT.lstrip("/") / cid
    assert (cgroup / "memory.limit_in_bytes").read_text().strip() == str(48 << 20)
    pids = Path("/sys/fs/cgroup/pids") / CGROUP_PARENT.lstrip("/") / cid
    assert (pids / "pids.max").read_text().strip() == "64"


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(
    no_leaks: None, containers: Containers
) -> None:
    # a shell as pid 1 has no SIGTERM handler, so the kernel drops SIGTERM for it
    cid, bundle = containers.prepare("stubborn", ("/bin/sh", "-c", "echo up; sleep 30"))
    containers.runtime.start(cid, bundle)
    _lines(bundle, 1)
    status = containers.runtime.stop(cid, bundle, signal.SIGTERM, timeout=0.5)
    assert status.state is ContainerState.STOPPED
    assert status.exit_code == 128 + signal.SIGKILL


def test_stop_sends_the_stop_signal_first(no_leaks: None, containers: Containers) -> None:
    script = "trap 'echo got-term; exit 7' TERM; echo up; while true; do sleep 0.1; done"
    cid, bundle = containers.prepare("polite", ("/bin/sh", "-c", script))
    containers.runtime.start(cid, bundle)
    _lines(bundle, 1)
    status = containers.runtime.stop(cid, bundle, signal.SIGTERM, timeout=15)
    assert status.exit_code == 7
    assert bundle.stdout_log.read_text().splitlines() == ["up", "got-term"]


def test_delete_leaves_no_process_mount_or_runtime_state(
    no_leaks: None, containers: Containers
) -> None:
    cid, bundle = containers.prepare("doomed", ("/bin/sleep", "30"))
    runtime = containers.runtime
    running = runtime.start(cid, bundle)
    assert running.pid is not None
    assert runtime.list_ids() == [cid]
    supervisor = int(bundle.shim_pid.read_text().split()[0])

    runtime.delete(cid, bundle)
    unmount_rootfs(bundle.rootfs)

    assert runtime.status(cid, bundle).state is ContainerState.STOPPED
    assert not _alive(running.pid)
    assert not _alive(supervisor)
    assert runtime.list_ids() == []
    state = subprocess.run(
        [runtime.commands.binary, "--root", str(runtime.commands.root), "state", cid],
        capture_output=True,
        text=True,
        check=False,
    )
    assert state.returncode != 0
    assert "does not exist" in state.stderr
    assert not mounted_at(bundle.rootfs)
    assert str(bundle.rootfs) not in Path("/proc/self/mounts").read_text()
    assert not (Path("/sys/fs/cgroup/memory") / CGROUP_PARENT.lstrip("/") / cid).exists()
    bundle.remove()
    assert not bundle.path.exists()


def test_supervisor_outlives_its_starter_and_is_readopted(
    no_leaks: None, containers: Containers
) -> None:
    cid, bundle = containers.prepare("adopted", ("/bin/sh", "-c", "echo up; sleep 30"))
    first = containers.runtime
    running = first.start(cid, bundle)
    supervisor = int(bundle.shim_pid.read_text().split()[0])
    # not our child: an agent restart does not take the container down
    ppid = int(Path(f"/proc/{supervisor}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid()

    # the fork server that made the supervisor goes away with its agent; the container stays
    first.close()
    assert shim.is_supervisor(bundle.shim_pid)
    # a new runtime object knows nothing but the directory, like a restarted agent
    again = RuncRuntime(first.commands)
    seen = again.status(cid, bundle)
    assert (seen.state, seen.pid) == (ContainerState.RUNNING, running.pid)
    stopped = again.stop(cid, bundle, signal.SIGKILL, timeout=10)
    again.close()
    assert stopped.exit_code == 137


def test_failed_start_reports_the_runtime_error(no_leaks: None, containers: Containers) -> None:
    cid, bundle = containers.prepare("missing", ("/bin/no-such-program",))
    with pytest.raises(SubprocessError) as caught:
        containers.runtime.start(cid, bundle)
    assert "no-such-program" in str(caught.value)
    assert caught.value.argv[0] == "runc"
    assert containers.runtime.status(cid, bundle).state is ContainerState.STOPPED


def test_a_directory_starts_once(no_leaks: None, containers: Containers) -> None:
    cid, bundle = containers.prepare("once", ("/bin/true",))
    containers.runtime.start(cid, bundle)
    assert containers.runtime.wait(cid, bundle, 15).exit_code == 0
    with pytest.raises(RuntimeFailure, match="was already started"):
        containers.runtime.start(cid, bundle)


def test_container_writes_stay_in_its_upper_dir(no_leaks: None, containers: Containers) -> None:
    cid, bundle = containers.prepare("writer", ("/bin/sh", "-c", "echo data > /made; rm /bin/ls"))
    containers.runtime.start(cid, bundle)
    assert containers.runtime.wait(cid, bundle, 15).exit_code == 0
    made = bundle.upper / "made"
    assert made.read_text() == "data\n"
    # written by container root: owned by the shifted uid on the host
    assert made.stat().st_uid == SHIFT.host_uid
    # the deletion is a whiteout in the upper dir; the shared layer keeps its file
    assert (bundle.upper / "bin/ls").is_char_device()
    layer = containers.store.path_of(containers.store.digests()[0])
    assert (layer / "bin/ls").is_symlink()


def test_crun_runs_the_same_bundle(
    no_leaks: None, state_root: Path, shifted_store: LayerStore, busybox_tar: bytes
) -> None:
    commands = RuntimeCommands.crun(
        str(state_root / "crun"), hybrid_cgroups=is_hybrid_cgroup_host()
    )
    with containers_with(commands, state_root, shifted_store, busybox_tar) as made:
        cid, bundle = made.prepare("crun", ("/bin/sh", "-c", "hostname; echo $$; exit 4"))
        made.runtime.start(cid, bundle)
        status = made.runtime.wait(cid, bundle, timeout=15)
        assert status.exit_code == 4
        assert bundle.stdout_log.read_text().splitlines() == [cid, "1"]


@pytest.fixture
def netns_file(state_root: Path) -> Iterator[str]:
    """A persistent network namespace bound to a file, the way ``ip netns`` keeps them."""
    path = state_root / "netns"
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True, capture_output=True)
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", str(path)], check=False, capture_output=True)


def test_user_namespaced_container_joins_an_existing_network_namespace(
    no_leaks: None, containers: Containers, netns_file: str
) -> None:
    path = netns_file
    cid, bundle = containers.prepare(
        "joined", ("/bin/sh", "-c", "ls -l /proc/self/ns/net; ls /sys/kernel"), netns=path
    )
    containers.runtime.start(cid, bundle)
    assert containers.runtime.wait(cid, bundle, 15).exit_code == 0, bundle.stderr_log.read_text()
    link = bundle.stdout_log.read_text().splitlines()[0]
    assert link.endswith(f"net:[{os.stat(path).st_ino}]")
    # /sys is the host's, bound read-only: a fresh sysfs is not allowed from this userns
    assert "mm" in bundle.stdout_log.read_text().split()


@pytest.fixture(params=["runc", "crun"])
def gated(
    request: pytest.FixtureRequest, state_root: Path, shifted_store: LayerStore, busybox_tar: bytes
) -> Iterator[Containers]:
    """Containers under runc and under crun (each has its own way of running hooks)."""
    if request.param == "runc":
        commands = RuntimeCommands(root=str(state_root / "runc"))
    else:
        commands = RuntimeCommands.crun(
            str(state_root / "crun"), hybrid_cgroups=is_hybrid_cgroup_host()
        )
    with containers_with(commands, state_root, shifted_store, busybox_tar) as made:
        yield made


def _add_link(netns: str, name: str) -> None:
    subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "link", "add", name, "type", "veth", "peer",
         "name", f"{name}p"],
        check=True, capture_output=True,
    )  # fmt: skip


def test_a_gated_process_starts_only_after_meanwhile_returns(
    no_leaks: None, gated: Containers, netns_file: str
) -> None:
    # the first thing the process does is list its interfaces; ``meanwhile`` adds one
    # after a pause, so an ungated process would list the namespace without it
    cid, bundle = gated.prepare(
        "gated", ("/bin/sh", "-c", "cat /proc/net/dev"), netns=netns_file, gate=True
    )
    done: list[str] = []

    def meanwhile() -> None:
        # called once the supervisor runs, never beside its launch (which it would slow)
        done.append("supervised" if shim.is_supervisor(bundle.shim_pid) else "not yet")
        time.sleep(0.5)
        _add_link(netns_file, "gate0")
        done.append("linked")

    gated.runtime.start(cid, bundle, meanwhile)
    assert done == ["supervised", "linked"]
    assert gated.runtime.wait(cid, bundle, 15).exit_code == 0, bundle.stderr_log.read_text()
    assert "gate0:" in bundle.stdout_log.read_text()


def test_when_meanwhile_fails_the_process_never_runs(
    no_leaks: None, gated: Containers, netns_file: str
) -> None:
    cid, bundle = gated.prepare(
        "refused", ("/bin/sh", "-c", "touch /ran; sleep 30"), netns=netns_file, gate=True
    )

    def meanwhile() -> None:
        raise OSError("the network could not be connected")

    with pytest.raises(OSError, match="could not be connected"):
        gated.runtime.start(cid, bundle, meanwhile)
    # the start returned only once the runtime had given up: nothing waits at the gate
    status = gated.runtime.status(cid, bundle)
    assert status.state is ContainerState.STOPPED
    assert status.exit_code != 0
    assert not (bundle.upper / "ran").exists()
    wait_until(lambda: not shim.is_supervisor(bundle.shim_pid), timeout=10)


def test_a_gated_container_without_meanwhile_runs_and_runs_again(
    no_leaks: None, gated: Containers
) -> None:
    # a restart (the restart policy, ``berth restart``) opens the gate at once
    cid, bundle = gated.prepare("again", ("/bin/sh", "-c", "echo run"), gate=True)
    for _ in range(2):
        gated.runtime.start(cid, bundle)
        assert gated.runtime.wait(cid, bundle, 15).exit_code == 0
        bundle.exit_file.unlink()
        bundle.shim_pid.unlink()
        bundle.container_pid.unlink(missing_ok=True)
    assert bundle.stdout_log.read_text() == "run\nrun\n"


def test_a_start_gate_that_is_not_a_fifo_is_refused(no_leaks: None, gated: Containers) -> None:
    cid, bundle = gated.prepare("notfifo", ("/bin/true",))
    bundle.gate.write_text("go\n")
    with pytest.raises(RuntimeFailure, match="is not a FIFO"):
        gated.runtime.start(cid, bundle)
    assert not bundle.shim_pid.exists()


def test_the_runtime_runs_from_the_sealed_copy_and_keeps_its_name(
    no_leaks: None, gated: Containers
) -> None:
    # runc and crun copy themselves at every start unless they already run from a sealed
    # memory file; the supervisor runs them from the fork server's copy
    cid, bundle = gated.prepare("sealed", ("/bin/sleep", "30"))
    gated.runtime.start(cid, bundle)
    supervisor = int(bundle.shim_pid.read_text().split()[0])
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    assert len(children) == 1, children
    name = gated.runtime.commands.binary
    exe = os.readlink(f"/proc/{children[0]}/exe")
    assert exe == f"/memfd:{name} (deleted)", "not the fork server's copy"
    assert Path(f"/proc/{children[0]}/comm").read_text().strip() == name
    assert not (bundle.path / name).exists(), "the name it was executed by is gone"
    gated.runtime.stop(cid, bundle, timeout=5)
