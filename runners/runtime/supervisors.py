"""Starting a container's supervisor: the :class:`SupervisorLauncher` protocol, two ways.

- :class:`ForkServer` (the default) asks one helper process, started once, to fork the
  supervisor (:mod:`runners.runtime.forkserver`): a few milliseconds per container.
- :class:`SpawnedSupervisors` runs ``python -m runners.runtime.shim`` per container: a
  fresh interpreter each time (about 100 ms), but no helper process to keep.

Both run the same :func:`runners.runtime.shim.supervise` and leave the same files, so a
container started one way is observed, stopped and re-adopted the same as the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import threading
import time
import weakref
from typing import IO, Any, Protocol

from runners.errors import RuntimeFailure, SubprocessError
from runners.runtime import forkserver, shim
from runners.runtime.bundle import ContainerDir


class SupervisorLauncher(Protocol):
    """Starts :func:`~runners.runtime.shim.supervise` for a container, detached from us."""

    def start(self) -> None:
        """Get ready now, so that the first container does not wait (may do nothing)."""
        ...

    def launch(
        self,
        bundle: ContainerDir,
        runtime_argv: list[str],
        max_log_bytes: int,
        *,
        hide_unified_cgroup: bool = False,
    ) -> int:
        """Start the supervisor of ``bundle`` running ``runtime_argv``; return its pid.

        Returns once the runtime has been spawned (or its failure to spawn recorded in
        ``exit.json``); raises :class:`RuntimeFailure` when no supervisor could start.
        ``hide_unified_cgroup`` runs the runtime without the host's cgroup2 mount
        (:func:`runners.runtime.hybrid.hide_unified_cgroup`).
        """
        ...

    def close(self) -> None:
        """Release what the launcher holds; supervisors already started keep running."""
        ...


class SpawnedSupervisors:
    """:class:`SupervisorLauncher` that runs ``python -m runners.runtime.shim`` each time."""

    def __init__(self, python: str = sys.executable, timeout: float = 30.0) -> None:
        self.python = python
        self.timeout = timeout

    def start(self) -> None:
        return None

    def launch(
        self,
        bundle: ContainerDir,
        runtime_argv: list[str],
        max_log_bytes: int,
        *,
        hide_unified_cgroup: bool = False,
    ) -> int:
        argv = [self.python, "-m", shim.MODULE, "--dir", str(bundle.path)]
        if bundle.run is not None:
            argv += ["--run", str(bundle.run)]
        if hide_unified_cgroup:
            argv.append("--hide-unified-cgroup")
        argv += ["--max-log-bytes", str(max_log_bytes), "--", *runtime_argv]
        with open(bundle.shim_log, "ab") as log:
            try:
                result = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise RuntimeFailure(
                    f"{bundle.path}: the supervisor did not report within {self.timeout}s;"
                    f" see {bundle.shim_log}"
                ) from exc
        if result.returncode != 0:
            raise SubprocessError(argv, result.returncode, _tail(bundle))
        return int(result.stdout.split()[0])

    def close(self) -> None:
        return None


class ForkServer:
    """:class:`SupervisorLauncher` over one ``python -m runners.runtime.forkserver`` process.

    The helper starts on first use (or :meth:`start`) and again if it died. Requests are
    serialised: each costs a double fork and the runtime's spawn, a few milliseconds.
    """

    def __init__(self, python: str = sys.executable, timeout: float = 30.0) -> None:
        self.python = python
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending = b""

    def start(self) -> None:
        """Start the helper now, so that the first container does not wait for it."""
        with self._lock:
            self._running()

    @property
    def pid(self) -> int | None:
        """The helper's pid while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def launch(
        self,
        bundle: ContainerDir,
        runtime_argv: list[str],
        max_log_bytes: int,
        *,
        hide_unified_cgroup: bool = False,
    ) -> int:
        request = {
            "dir": str(bundle.path),
            "run": None if bundle.run is None else str(bundle.run),
            "max_log_bytes": max_log_bytes,
            "argv": runtime_argv,
            "hide_unified_cgroup": hide_unified_cgroup,
        }
        line = json.dumps(request).encode() + b"\n"
        with self._lock:
            proc = self._running()
            try:
                _stream(proc.stdin).write(line)
            except BrokenPipeError:
                # it died since the last request, which therefore cannot have reached it
                proc = self._restart()
                _stream(proc.stdin).write(line)
            reply = self._reply(proc, bundle)
        if "pid" in reply:
            return int(reply["pid"])
        raise RuntimeFailure(
            f"{bundle.path}: the supervisor did not start: {reply.get('error', reply)}"
        )

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _shut_down(proc)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        return self._restart()

    def _restart(self) -> subprocess.Popen[bytes]:
        if self._proc is not None:
            _shut_down(self._proc)
        self._pending = b""
        # a session of its own: a Ctrl-C meant for the agent's terminal must not kill it
        self._proc = subprocess.Popen(
            [self.python, "-m", forkserver.MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
        )
        # closes the pipes (the helper then exits) when this object is dropped unclosed
        weakref.finalize(self, _shut_down, self._proc)
        return self._proc

    def _reply(self, proc: subprocess.Popen[bytes], bundle: ContainerDir) -> dict[str, Any]:
        out = _stream(proc.stdout)
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            selector.register(out, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    # the stream is out of step now: start afresh next time
                    _shut_down(proc)
                    self._proc = None
                    raise RuntimeFailure(
                        f"{bundle.path}: the fork server did not answer within {self.timeout}s;"
                        f" see {bundle.shim_log}"
                    )
                chunk = os.read(out.fileno(), 1 << 16)
                if not chunk:
                    code = proc.wait()
                    self._proc = None
                    raise RuntimeFailure(
                        f"{bundle.path}: the fork server exited ({code}) before answering;"
                        " see the agent's log"
                    )
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply


def _stream(stream: IO[bytes] | None) -> IO[bytes]:
    if stream is None:
        raise RuntimeFailure("the fork server was started without pipes")
    return stream


def _shut_down(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            # a broken pipe on close: the helper is gone already
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _tail(bundle: ContainerDir, lines: int = 20) -> str:
    try:
        return "\n".join(bundle.shim_log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
