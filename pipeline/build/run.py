"""RUN steps: a container over the stage's layers whose upper directory becomes a layer.

The root filesystem is an overlay of the stage's unpacked layers with a fresh upper
directory (:mod:`runners.runtime.rootfs`); the runtime spec comes from
:func:`runners.runtime.spec.runtime_spec` (PID, mount, UTS, IPC and network namespaces;
no network unless asked for); ``runc run`` executes it in the foreground with the
output captured and a timeout. Afterwards the upper directory *is* the step's change
set: files it holds were added or changed, 0:0 character devices are deletions and
``trusted.overlay.opaque`` directories replaced ones — :func:`runners.oci.layer.tree_entries`
writes those as OCI whiteouts.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from pipeline.build.errors import BuildError
from pipeline.build.lowers import LowerView
from runners.errors import RuntimeFailure

if TYPE_CHECKING:
    from runners.runtime.oci_runtime import RuntimeCommands

OUTPUT_TAIL_LINES = 20
# one top-level cgroup per step, which the runtime removes with the container (a shared
# parent would be left behind in every controller, and removing it races other builds)
CGROUP_PREFIX = "/berth-build-"
# Where runc creates mount points when the image lacks them; removed from the layer
# again when they are still empty (they are the runtime's, not the step's).
_MOUNT_POINTS = ("proc", "dev", "sys", "etc/hosts", "etc/resolv.conf", "etc/hostname")


@dataclass(frozen=True)
class RunRequest:
    """One RUN: argv, environment, directory, user, network, time limit."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    cwd: str = "/"
    user: str = ""
    host_network: bool = False
    timeout: float = 3600.0


@dataclass(frozen=True)
class RunOutcome:
    """How the step's process ended: exit code (None: killed at the timeout) and output."""

    exit_code: int | None
    output_tail: str


CONTAINER_ID_FILE = "container.id"


class ContainerRunner(Protocol):
    """Runs a RUN step's process with ``rootfs`` as its root file system."""

    def run(
        self, request: RunRequest, rootfs: Path, bundle: Path, spec: dict[str, object]
    ) -> RunOutcome: ...


class RuncRunner:
    """:class:`ContainerRunner` over ``runc run`` in the foreground."""

    def __init__(self, commands: RuntimeCommands | None = None) -> None:
        # the runtime package loads only when a RUN step actually runs
        from runners.runtime.oci_runtime import RuntimeCommands

        self.commands = commands or RuntimeCommands()

    def run(
        self, request: RunRequest, rootfs: Path, bundle: Path, spec: dict[str, object]
    ) -> RunOutcome:
        import json

        (bundle / "config.json").write_text(json.dumps(spec))
        container_id = f"berth-build-{uuid.uuid4().hex[:12]}"
        # read by reap_workspace when this process dies before the step ends
        (bundle / CONTAINER_ID_FILE).write_text(container_id)
        argv = self.commands.run(
            container_id, str(bundle), str(bundle / "container.pid"), str(bundle / "runtime.log")
        )
        # The output goes to the system's temp dir, not the step's disk: a step that
        # fills its disk must still be able to say so.
        with tempfile.TemporaryFile() as sink:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
            try:
                code: int | None = process.wait(timeout=request.timeout)
            except subprocess.TimeoutExpired:
                code = None
                subprocess.run(
                    self.commands.kill(container_id, 9), capture_output=True, check=False
                )
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            finally:
                subprocess.run(self.commands.delete(container_id), capture_output=True, check=False)
            tail = _tail_of(sink)
        if code not in (0, None) and not tail:
            tail = _tail(bundle / "runtime.log")
        return RunOutcome(code, tail)


def run_step(
    runner: ContainerRunner,
    request: RunRequest,
    layer_dirs: Sequence[Path],
    workspace: Path,
    *,
    passwd: str | None,
    group: str | None,
) -> tuple[RunOutcome, Path]:
    """Run ``request`` over ``layer_dirs`` (bottom first); return the outcome and upper dir."""
    from runners.runtime.host import host_limits
    from runners.runtime.rootfs import mount_rootfs, unmount_rootfs
    from runners.runtime.spec import BindMount, InstanceSpec, RunDefaults, runtime_spec

    upper, work, rootfs = workspace / "upper", workspace / "work", workspace / "rootfs"
    for directory in (upper, work, rootfs):
        directory.mkdir()
    os.chmod(upper, 0o755)  # noqa: S103 -- the container's "/"
    lowers = list(reversed(layer_dirs))
    if not lowers:
        empty = workspace / "empty"
        empty.mkdir()
        lowers = [empty]
    binds: tuple[BindMount, ...] = ()
    if request.host_network:
        binds = tuple(
            BindMount(f"/etc/{name}", f"/etc/{name}", readonly=True)
            for name in ("resolv.conf", "hosts")
            if Path(f"/etc/{name}").exists()
        )
    instance = InstanceSpec(
        name="buildkitsandbox",
        rootfs=str(rootfs),
        entrypoint=request.argv,
        command=(),
        env=dict(request.env),
        cwd=request.cwd or "/",
        user=request.user or None,
        host_network=request.host_network,
        mounts=binds,
        cgroups_path=f"{CGROUP_PREFIX}{workspace.name}",
    )
    try:
        spec = runtime_spec(instance, RunDefaults(), host_limits(), passwd=passwd, group=group)
    except RuntimeFailure as exc:
        raise BuildError(str(exc)) from exc
    mount_rootfs(lowers, upper, work, rootfs)
    try:
        outcome = runner.run(request, rootfs, workspace, spec)
    finally:
        unmount_rootfs(rootfs)
    _drop_mount_points(upper, LowerView(layer_dirs))
    return outcome, upper


def _drop_mount_points(upper: Path, lower: LowerView) -> None:
    for rel in _MOUNT_POINTS:
        path = upper / rel
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if lower.lstat(rel) is not None:
            continue
        empty = (stat.S_ISDIR(info.st_mode) and not any(path.iterdir())) or (
            stat.S_ISREG(info.st_mode) and info.st_size == 0
        )
        if empty:
            if stat.S_ISDIR(info.st_mode):
                path.rmdir()
            else:
                path.unlink()
            parent = path.parent
            if (
                parent != upper
                and not any(parent.iterdir())
                and lower.lstat(str(parent.relative_to(upper))) is not None
            ):
                # runc made only the mount point inside an existing directory
                with contextlib.suppress(OSError):
                    parent.rmdir()


def reap_workspace(workspace: Path) -> None:
    """Stop the container of a step whose build died, and undo the step's mounts."""
    from runners.runtime.oci_runtime import RuntimeCommands
    from runners.runtime.rootfs import unmount_rootfs

    try:
        container_id = (workspace / CONTAINER_ID_FILE).read_text().strip()
    except FileNotFoundError:
        container_id = ""
    if container_id.startswith("berth-build-"):
        commands = RuntimeCommands()
        subprocess.run(commands.kill(container_id, 9), capture_output=True, check=False)
        subprocess.run(commands.delete(container_id), capture_output=True, check=False)
    prefix = str(workspace.resolve()) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        points = [line.split(" ")[4] for line in mountinfo if len(line.split(" ")) > 4]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        unmount_rootfs(Path(point))


def _tail_of(stream: IO[bytes]) -> str:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - 16384))
    text = stream.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-OUTPUT_TAIL_LINES:])


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - 16384))
            text = stream.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-OUTPUT_TAIL_LINES:])
