"""Running containers with an OCI runtime (runc by default, crun on request).

:class:`RuntimeCommands` only *returns* argv lists; :class:`RuncRuntime` runs them. Each
container runs as ``runc run`` (foreground) under its own supervisor process
(:mod:`runners.runtime.shim`, forked by :mod:`runners.runtime.forkserver`), which
outlives the agent, captures the output into capped log files and records the exit code: runc itself forgets a container, and its exit
status, once the process is gone. Everything :meth:`RuncRuntime.status` needs is in the
container's directory and ``/proc``, so an agent re-adopts its containers after a
restart by asking for their status.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runners.errors import RuntimeFailure, SubprocessError
from runners.runtime import shim
from runners.runtime.bundle import ContainerDir
from runners.runtime.dirwatch import DirWatch
from runners.runtime.migration import MigrationLockWarmer
from runners.runtime.supervisors import ForkServer, SupervisorLauncher
from runners.threads import spawn

_CONTAINER_ID = re.compile(r"^[\w+.-]{1,128}$")
_GONE = ("does not exist", "not exist", "not running", "container not found", "no such")


class ContainerNotRunning(RuntimeFailure):
    """A signal was meant for a container whose process is already gone."""


class ContainerState(enum.Enum):
    """Where a container is in its life, as observed (never as remembered)."""

    CREATING = "creating"  # the supervisor runs; the runtime has not reported a pid yet
    RUNNING = "running"
    STOPPING = "stopping"  # the process is gone; the supervisor is recording its exit
    STOPPED = "stopped"
    ABSENT = "absent"  # never started here


@dataclass(frozen=True)
class ContainerStatus:
    """An observation of one container.

    ``exit_code`` is 128+N when signal N ended it, ``None`` while it runs or when the
    supervisor died before recording it; ``started`` says the runtime reported a pid.
    """

    id: str
    state: ContainerState
    pid: int | None = None
    exit_code: int | None = None
    started: bool = False


class ContainerRuntime(Protocol):
    """Starts, observes, signals and removes containers from prepared directories."""

    def start(
        self,
        container_id: str,
        bundle: ContainerDir,
        meanwhile: Callable[[], None] | None = None,
    ) -> ContainerStatus: ...

    def status(self, container_id: str, bundle: ContainerDir) -> ContainerStatus: ...

    def kill(self, container_id: str, sig: int) -> None: ...

    def wait(self, container_id: str, bundle: ContainerDir, timeout: float) -> ContainerStatus: ...

    def stop(
        self, container_id: str, bundle: ContainerDir, sig: int = ..., timeout: float = ...
    ) -> ContainerStatus: ...

    def delete(self, container_id: str, bundle: ContainerDir) -> None: ...


@dataclass(frozen=True)
class RuntimeCommands:
    """The argv of each runtime operation; no I/O (tests pin them exactly).

    ``root`` is the runtime's state directory (``--root``). ``hide_unified_cgroup`` asks
    the supervisor to run ``run`` in a private mount namespace without the host's cgroup2
    mount (the hybrid-cgroup work-around crun needs, :mod:`runners.runtime.hybrid`); the
    other operations run as they are.
    """

    binary: str = "runc"
    root: str | None = None
    hide_unified_cgroup: bool = False

    @classmethod
    def crun(cls, root: str | None = None, *, hybrid_cgroups: bool) -> RuntimeCommands:
        """crun; on a hybrid-cgroup host its ``run`` does not see the cgroup2 mount."""
        return cls(binary="crun", root=root, hide_unified_cgroup=hybrid_cgroups)

    def _base(self) -> list[str]:
        argv = [self.binary]
        if self.root is not None:
            argv += ["--root", self.root]
        return argv

    def run(self, container_id: str, bundle: str, pid_file: str, log_file: str) -> list[str]:
        return [
            *self._base(),
            "--log",
            log_file,
            "--log-format",
            "json",
            "run",
            "--bundle",
            bundle,
            "--pid-file",
            pid_file,
            container_id,
        ]

    def state(self, container_id: str) -> list[str]:
        return [*self._base(), "state", container_id]

    def kill(self, container_id: str, sig: int) -> list[str]:
        return [*self._base(), "kill", container_id, str(int(sig))]

    def delete(self, container_id: str) -> list[str]:
        return [*self._base(), "delete", "--force", container_id]

    def list(self) -> list[str]:
        return [*self._base(), "list", "--format", "json"]


class RuncRuntime:
    """:class:`ContainerRuntime` over the ``runc`` (or ``crun``) command line."""

    def __init__(
        self,
        commands: RuntimeCommands | None = None,
        *,
        python: str = sys.executable,
        max_log_bytes: int = shim.DEFAULT_MAX_LOG_BYTES,
        start_timeout: float = 30.0,
        kill_timeout: float = 10.0,
        poll_interval: float = 0.01,
        supervisors: SupervisorLauncher | None = None,
        warmer: MigrationLockWarmer | None = None,
    ) -> None:
        if max_log_bytes < 1:
            raise RuntimeFailure(f"max_log_bytes must be positive (got {max_log_bytes})")
        self.commands = commands or RuntimeCommands()
        self.python = python
        self.supervisors: SupervisorLauncher = supervisors or ForkServer(python, start_timeout)
        self.max_log_bytes = max_log_bytes
        self.start_timeout = start_timeout
        self.kill_timeout = kill_timeout
        self.poll_interval = poll_interval
        self.warmer = warmer or MigrationLockWarmer()
        self._cgroup_paths = _CgroupPaths()

    def warming(self) -> contextlib.AbstractContextManager[None]:
        """Keep the kernel's cgroup migration lock warm for a start about to happen.

        :meth:`start` does so itself; a caller with work to do before it (a network, a
        root filesystem) begins earlier, so that the lock's first wait overlaps that
        work (:mod:`runners.runtime.migration`).
        """
        return self.warmer.active()

    def start(
        self,
        container_id: str,
        bundle: ContainerDir,
        meanwhile: Callable[[], None] | None = None,
    ) -> ContainerStatus:
        """Start the container of ``bundle``; return once it runs (or already ended).

        ``meanwhile`` (connecting the container's network, say) runs on a thread of its
        own while the runtime creates the container (once the supervisor runs). With
        a start gate in the bundle (:meth:`ContainerDir.make_gate`,
        :func:`~runners.runtime.spec.gate_hook`) the container's process waits until it
        has returned; without one it runs before the runtime is launched. If it raises,
        the container ends without running its process and the exception propagates (the
        stopped container is the caller's to delete).

        Raises :class:`SubprocessError` with the runtime's own error when it could not
        create the container.
        """
        _check_id(container_id)
        if bundle.shim_pid.exists() or bundle.exit_file.exists():
            raise RuntimeFailure(
                f"container {container_id}: {bundle.state} was already started; delete the"
                " container and prepare a fresh directory to run it again"
            )
        with self.warming():
            return self._start(container_id, bundle, meanwhile)

    def _start(
        self,
        container_id: str,
        bundle: ContainerDir,
        meanwhile: Callable[[], None] | None,
    ) -> ContainerStatus:
        runtime_argv = self.commands.run(
            container_id, str(bundle.state), str(bundle.container_pid), str(bundle.runtime_log)
        )
        gate = _open_gate(bundle)
        try:
            if gate is None and meanwhile is not None:
                meanwhile()
            self.supervisors.launch(
                bundle,
                runtime_argv,
                self.max_log_bytes,
                hide_unified_cgroup=self.commands.hide_unified_cgroup,
            )
            # with a gate, ``meanwhile`` overlaps the runtime's work. Only now: on a
            # thread of this process it would hold the interpreter's lock the launch
            # needs at each of its replies (a launch took 4 ms beside it, 1-2 alone)
            side = spawn(meanwhile, "start-meanwhile") if gate is not None and meanwhile else None
            if gate is not None:
                self._open_gate_after(container_id, bundle, gate, side)
            # the gate stays open until the hook has read it: a FIFO loses what was
            # written to it once nobody holds it open
            status = self._await(container_id, bundle, self.start_timeout, until_running=True)
        finally:
            if gate is not None:
                os.close(gate)
        if status.state is ContainerState.STOPPED and not status.started:
            record = bundle.read_exit()
            detail = (
                (record.error if record else "")
                or _runtime_errors(bundle)
                or _tail(bundle.stderr_log)
            )
            raise SubprocessError(
                runtime_argv, status.exit_code if status.exit_code is not None else -1, detail
            )
        if status.state not in (ContainerState.RUNNING, ContainerState.STOPPED):
            raise RuntimeFailure(
                f"container {container_id}: no pid and no exit within {self.start_timeout}s;"
                f" see {bundle.runtime_log} and {bundle.shim_log}"
            )
        return status

    def _open_gate_after(
        self,
        container_id: str,
        bundle: ContainerDir,
        gate: int,
        side: Future[None] | None,
    ) -> None:
        """Wait for ``side``, then let the container go on — or, if it raised, end it."""
        try:
            if side is not None:
                side.result()
        except BaseException:
            os.write(gate, b"no\n")
            # the hook fails on "no" and the runtime with it; wait for that while the
            # word can still be read, so that no container is left waiting at the gate
            self._await(container_id, bundle, self.start_timeout, until_running=False)
            raise
        os.write(gate, b"go\n")

    def prepare(self) -> None:
        """Start the supervisor launcher's helper now rather than at the first start."""
        self.supervisors.start()

    def close(self) -> None:
        """Stop the supervisor launcher's helper; running containers are not affected."""
        self.supervisors.close()

    def status(self, container_id: str, bundle: ContainerDir) -> ContainerStatus:
        """Observe the container from its directory and ``/proc`` (no runtime call)."""
        record = bundle.read_exit()
        if record is not None:
            return ContainerStatus(
                container_id, ContainerState.STOPPED, exit_code=record.code, started=record.started
            )
        pid = _read_pid(bundle.container_pid)
        if pid is not None and _is_container_process(pid, self._cgroup_paths.of(bundle)):
            return ContainerStatus(container_id, ContainerState.RUNNING, pid=pid, started=True)
        if shim.is_supervisor(bundle.shim_pid):
            state = ContainerState.CREATING if pid is None else ContainerState.STOPPING
            return ContainerStatus(container_id, state, started=pid is not None)
        if not bundle.shim_pid.exists():
            return ContainerStatus(container_id, ContainerState.ABSENT)
        record = bundle.read_exit()
        if record is not None:
            # it wrote exit.json and exited between the first look and now
            return ContainerStatus(
                container_id, ContainerState.STOPPED, exit_code=record.code, started=record.started
            )
        # The supervisor died without recording an exit (killed, host rebooted): the
        # container is gone too, but how it ended is unknown.
        return ContainerStatus(container_id, ContainerState.STOPPED, started=pid is not None)

    def kill(self, container_id: str, sig: int) -> None:
        """Send ``sig`` to the container's init process."""
        _check_id(container_id)
        argv = self.commands.kill(container_id, sig)
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            if _is_gone(result.stderr):
                raise ContainerNotRunning(
                    f"container {container_id} is not running (signal {sig} not sent)"
                )
            raise SubprocessError(argv, result.returncode, result.stderr)

    def wait(self, container_id: str, bundle: ContainerDir, timeout: float) -> ContainerStatus:
        """Wait up to ``timeout`` seconds for the container to stop; return what is seen last."""
        return self._await(container_id, bundle, timeout, until_running=False)

    def stop(
        self,
        container_id: str,
        bundle: ContainerDir,
        sig: int = signal.SIGTERM,
        timeout: float = 10.0,
    ) -> ContainerStatus:
        """Send ``sig`` (the image's stop signal), wait ``timeout`` s, then SIGKILL."""
        status = self.status(container_id, bundle)
        if status.state is ContainerState.CREATING:
            status = self._await(container_id, bundle, self.start_timeout, until_running=True)
        if status.state in (ContainerState.STOPPED, ContainerState.ABSENT):
            return status
        for signum, grace in ((sig, timeout), (signal.SIGKILL, self.kill_timeout)):
            with contextlib.suppress(ContainerNotRunning):
                self.kill(container_id, signum)
            status = self.wait(container_id, bundle, grace)
            if status.state is ContainerState.STOPPED:
                return status
        raise RuntimeFailure(
            f"container {container_id} did not stop within {self.kill_timeout}s of SIGKILL"
            f" (pid {status.pid}); it may be stuck in the kernel (D state)"
        )

    def delete(self, container_id: str, bundle: ContainerDir) -> None:
        """Remove the runtime's record of the container, killing it if it still runs.

        The container directory and its root filesystem mount are the caller's to remove.
        """
        _check_id(container_id)
        try:
            self._delete(container_id, bundle)
        finally:
            # last: the waits in _delete observe it (and so remember its config)
            self._cgroup_paths.forget(bundle)

    def _delete(self, container_id: str, bundle: ContainerDir) -> None:
        argv = self.commands.delete(container_id)
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0 and not _is_gone(result.stderr):
            raise SubprocessError(argv, result.returncode, result.stderr)
        status = self.wait(container_id, bundle, self.kill_timeout)
        deadline = time.monotonic() + self.kill_timeout
        while shim.is_supervisor(bundle.shim_pid):
            if time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        else:
            if status.state in (ContainerState.STOPPED, ContainerState.ABSENT):
                return
        raise RuntimeFailure(
            f"container {container_id}: still {status.state.value} (supervisor"
            f" {_read_pid(bundle.shim_pid)})"
            f" {self.kill_timeout}s after the runtime deleted it"
        )

    def list_ids(self) -> list[str]:
        """Containers the runtime knows (running ones: ``runc run`` forgets stopped ones)."""
        argv = self.commands.list()
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SubprocessError(argv, result.returncode, result.stderr)
        entries = json.loads(result.stdout or "null") or []
        return sorted(str(entry["id"]) for entry in entries)

    def _await(
        self, container_id: str, bundle: ContainerDir, timeout: float, *, until_running: bool
    ) -> ContainerStatus:
        deadline = time.monotonic() + timeout
        # woken by the runtime writing container.pid or the supervisor exit.json; the
        # poll interval only bounds how late a supervisor's death (no file) is seen
        with DirWatch(bundle.state) as changes:
            while True:
                status = self.status(container_id, bundle)
                if status.state in (ContainerState.STOPPED, ContainerState.ABSENT):
                    return status
                if until_running and status.state is ContainerState.RUNNING:
                    return status
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return status
                changes.wait(min(remaining, self.poll_interval))


def _open_gate(bundle: ContainerDir) -> int | None:
    """The bundle's start gate opened for writing (never blocking), or None without one."""
    try:
        fd = os.open(bundle.gate, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise RuntimeFailure(
            f"{bundle.gate} is not a FIFO; remove the container and create it again"
        )
    return fd


def _check_id(container_id: str) -> None:
    if not _CONTAINER_ID.match(container_id):
        raise RuntimeFailure(
            f"container id {container_id!r}: use 1-128 letters, digits, '_', '+', '.' or '-'"
        )


def _is_gone(stderr: str) -> bool:
    text = stderr.lower()
    return any(marker in text for marker in _GONE)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _proc_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class _CgroupPaths:
    """The ``cgroupsPath`` of each container's ``config.json``, read once per file version.

    Every observation of a running container checks its cgroup, and the supervisor
    observes every container each tick: parsing each config every time was most of it.
    """

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple[int, int, int], str]] = {}

    def of(self, bundle: ContainerDir) -> str | None:
        try:
            info = os.stat(bundle.config)
            version = (info.st_ino, info.st_mtime_ns, info.st_size)
            known = self._known.get(bundle.config)
            if known is not None and known[0] == version:
                return known[1]
            path = str(bundle.read_config()["linux"]["cgroupsPath"])
        except (FileNotFoundError, KeyError, TypeError, ValueError):
            self._known.pop(bundle.config, None)
            return None
        self._known[bundle.config] = (version, path)
        return path

    def forget(self, bundle: ContainerDir) -> None:
        self._known.pop(bundle.config, None)


def _is_container_process(pid: int, cgroups_path: str | None) -> bool:
    # A pid from a file may have been reused by an unrelated process; the container's
    # own process sits in the cgroup the spec named.
    if cgroups_path is None or not _proc_alive(pid):
        return False
    try:
        membership = Path(f"/proc/{pid}/cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    wanted = cgroups_path if cgroups_path.startswith("/") else f"/{cgroups_path}"
    return any(line.rsplit(":", 1)[-1].endswith(wanted) for line in membership.splitlines())


def _runtime_errors(bundle: ContainerDir) -> str:
    """The error messages of the runtime's JSON log (runc and crun both write ``msg``)."""
    messages = []
    try:
        lines = bundle.runtime_log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    for line in lines[-50:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            messages.append(line)
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "warning"):
            messages.append(str(entry.get("msg", "")))
    return "\n".join(messages)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
