"""The fork server: one small process per agent that forks container supervisors.

    python -m runners.runtime.forkserver

Starting a fresh interpreter for every container's supervisor costs more than ``runc``
itself (about 100 ms against 25 ms here). Forking one from the agent would be cheap but
unsafe — the agent is threaded, and a child of a threaded process must not touch a lock
another thread may have held at the fork — and each supervisor would pin a copy-on-write
image of the agent's whole heap. This process is single-threaded and small: it imports
the supervisor's code once, then double-forks supervisors (each a session leader of its
own, re-parented to init as soon as the intermediate child exits) and answers with a
supervisor's pid once it has taken the container on.

It forks the next supervisor *before* it is asked for one: a spare waits, already
detached, for the next request, so a start does not wait for the two forks (about 2 ms
here); after every request a new spare is forked. It also keeps a sealed copy of the
runtime's binary (:mod:`runners.runtime.sealed`) that supervisors execute, so that runc
or crun need not copy themselves at every start; a spare forked before a copy was made
(or renewed) cannot see it and is replaced.

The protocol is one JSON object per line on stdin, one reply per line on stdout::

    {"dir": "/…/containers/web-1", "run": "/…/run/containers/web-1",
     "max_log_bytes": 10485760, "argv": ["runc", …], "hide_unified_cgroup": false}
    {"pid": 4242}                 or               {"error": "…"}

The server exits when its stdin closes, i.e. when the agent ends however it ends; the
supervisors it forked are not its children any more and keep running, and a spare that
was never asked for anything sees its request pipe close and exits.
"""

from __future__ import annotations

import json
import os
import select
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runners.runtime import syscalls
from runners.runtime.bundle import ContainerDir
from runners.runtime.sealed import SealedBinaries, SealedCopy
from runners.runtime.shim import read_all, report, supervise

MODULE = "runners.runtime.forkserver"
SPARE_AFTER = 0.02  # seconds without a request before a spare is forked


def serve(requests: int, replies: int) -> int:
    """Answer requests read from fd ``requests`` on fd ``replies`` until end of input."""
    pending = b""
    server = Forker(SealedBinaries())
    try:
        while True:
            if b"\n" not in pending:
                # idle for a while (the start just answered is past its busiest part):
                # have a supervisor ready for the next request
                if server.spare is None and not _readable(requests, SPARE_AFTER):
                    server.prepare_spare()
                chunk = os.read(requests, 1 << 16)
                if not chunk:
                    return 0
                pending += chunk
                continue
            line, pending = pending.split(b"\n", 1)
            _write_all(replies, json.dumps(server.handle(line)).encode() + b"\n")
    finally:
        server.close()


@dataclass(frozen=True)
class Launch:
    """One request: the container's directory, the runtime's argv and how to run it."""

    container: ContainerDir
    argv: list[str]
    max_log_bytes: int
    hide_unified_cgroup: bool
    executable: SealedCopy | None = None

    @classmethod
    def parse(cls, line: bytes) -> Launch:
        """The request ``line``; ValueError, KeyError or TypeError when it is not one."""
        return cls._from_request(json.loads(line))

    @classmethod
    def _from_request(cls, request: dict[str, Any]) -> Launch:
        run = request.get("run")
        if not isinstance(run, (str, type(None))):
            raise TypeError("run must be a directory or null")
        launch = cls(
            container=ContainerDir(Path(request["dir"]), None if run is None else Path(run)),
            argv=[str(arg) for arg in request["argv"]],
            max_log_bytes=int(request["max_log_bytes"]),
            hide_unified_cgroup=request.get("hide_unified_cgroup", False),
        )
        if not isinstance(launch.hide_unified_cgroup, bool):
            raise TypeError("hide_unified_cgroup must be true or false")
        if not launch.argv or launch.max_log_bytes < 1:
            raise ValueError("a request needs a runtime argv and a positive max_log_bytes")
        return launch

    def to_spare(self) -> bytes:
        """This request as a spare supervisor reads it (the sealed copy by descriptor)."""
        copy = self.executable
        doc = {
            "dir": str(self.container.path),
            "run": None if self.container.run is None else str(self.container.run),
            "argv": self.argv,
            "max_log_bytes": self.max_log_bytes,
            "hide_unified_cgroup": self.hide_unified_cgroup,
            "executable": [copy.fd, copy.source, list(copy.identity)] if copy else None,
        }
        return json.dumps(doc).encode() + b"\n"

    @classmethod
    def from_server(cls, line: bytes) -> Launch:
        request = json.loads(line)
        launch = cls._from_request(request)
        copy = request["executable"]
        if copy is None:
            return launch
        fd, source, identity = copy
        return replace(launch, executable=SealedCopy(int(fd), str(source), tuple(identity)))


@dataclass(frozen=True)
class Spare:
    """A supervisor forked ahead of its request, waiting for it on a pipe."""

    requests: int  # write end: the request goes here
    ready: int  # read end: "ok PID" (or what went wrong) comes back, then end of file
    # the sealed copies it inherited: descriptor and the binary's identity (a descriptor
    # number alone may since have been reused for another copy)
    copies: frozenset[tuple[int, tuple[int, int, int, int]]]


class Forker:
    """Forks supervisors, one ahead of time when it can."""

    def __init__(self, binaries: SealedBinaries | None = None) -> None:
        self.binaries = binaries
        self.spare: Spare | None = None

    def handle(self, line: bytes) -> dict[str, Any]:
        """Start one supervisor for the request ``line``; its pid or an error to reply."""
        try:
            launch = Launch.parse(line)
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"malformed request {line[:200]!r}: {exc}"}
        if self.binaries is not None:
            launch = replace(launch, executable=self.binaries.copy_of(launch.argv[0]))
        spare, self.spare = self.spare, None
        if spare is not None:
            copy = launch.executable
            if copy is None or (copy.fd, copy.identity) in spare.copies:
                try:
                    _write_all(spare.requests, launch.to_spare())
                except OSError:
                    pass  # it died waiting; a fresh one takes the request
                else:
                    os.close(spare.requests)
                    return _reply(spare.ready)
            _discard(spare)
        return self._fork_now(launch)

    def prepare_spare(self) -> None:
        """Fork a supervisor to wait for the next request, unless one waits already."""
        if self.spare is not None:
            return
        requests_read, requests_write = os.pipe()
        ready_read, ready_write = os.pipe()
        try:
            child = os.fork()
        except OSError:
            for fd in (requests_read, requests_write, ready_read, ready_write):
                os.close(fd)
            return  # no spare: the next request forks its own
        if child == 0:
            os.close(requests_write)
            os.close(ready_read)
            _intermediate(lambda: _spare(requests_read, ready_write), ready_write)
        os.close(requests_read)
        os.close(ready_write)
        os.waitpid(child, 0)
        copies = frozenset(self.binaries.held()) if self.binaries else frozenset()
        self.spare = Spare(requests_write, ready_read, copies)

    def close(self) -> None:
        if self.spare is not None:
            _discard(self.spare)
            self.spare = None
        if self.binaries is not None:
            self.binaries.close()

    def _fork_now(self, launch: Launch) -> dict[str, Any]:
        ready_read, ready_write = os.pipe()
        try:
            child = os.fork()
        except OSError as exc:
            os.close(ready_read)
            os.close(ready_write)
            return {"error": f"fork failed: {exc}"}
        if child == 0:
            os.close(ready_read)
            _intermediate(lambda: _supervisor(launch, ready_write), ready_write)
        os.close(ready_write)
        os.waitpid(child, 0)
        return _reply(ready_read)


def _reply(ready: int) -> dict[str, Any]:
    message = read_all(ready)
    if message.startswith(b"ok "):
        return {"pid": int(message.split()[1])}
    return {"error": message.decode(errors="replace") or "the supervisor died before starting"}


def _discard(spare: Spare) -> None:
    # the spare reads end of file and exits
    os.close(spare.requests)
    os.close(spare.ready)


def _intermediate(then: Callable[[], None], ready: int) -> None:
    """The first child: a new session, then ``then`` in a child, then exit. Never returns."""
    code = 1
    try:
        os.setsid()
        if os.fork() == 0:
            then()
        code = 0
    except BaseException:
        report(ready, b"supervisor fork failed: " + traceback.format_exc().encode())
    os._exit(code)


def _spare(requests: int, ready: int) -> None:
    """A grandchild forked ahead of time: wait for the request, then supervise it."""
    try:
        _detach_stdio()
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(requests, 1 << 16)
            if not chunk:
                os._exit(0)  # the server is gone (or dropped this spare): nothing to do
            line += chunk
        os.close(requests)
        launch = Launch.from_server(line)
    except BaseException:
        report(ready, b"supervisor failed: " + traceback.format_exc().encode())
        os._exit(1)
    _supervisor(launch, ready)


def _supervisor(launch: Launch, ready: int) -> None:
    """The grandchild: stdio away from the server's pipes, then :func:`supervise`."""
    code = 1
    try:
        _detach_stdio()
        # the supervisor's own diagnostics go to the container's shim.log
        log = os.open(launch.container.shim_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 2)
        os.close(log)
        code = supervise(
            launch.container,
            launch.argv,
            launch.max_log_bytes,
            ready,
            hide_unified_cgroup=launch.hide_unified_cgroup,
            executable=launch.executable,
        )
    except BaseException:
        traceback.print_exc()
        report(ready, b"supervisor failed: " + traceback.format_exc().encode())
    os._exit(code)


def _detach_stdio() -> None:
    # stdin and stdout are the agent's pipes to the server: holding them would keep them
    # open for as long as the container runs
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def main() -> int:
    # loaded once here rather than in every supervisor (crun's hybrid-cgroup work-around)
    syscalls.libc_available()
    return serve(sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
