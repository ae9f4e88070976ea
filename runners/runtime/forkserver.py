"""The fork server: one small process per agent that forks container supervisors.

    python -m runners.runtime.forkserver

Starting a fresh interpreter for every container's supervisor costs more than ``runc``
itself (about 100 ms against 25 ms here). Forking one from the agent would be cheap but
unsafe — the agent is threaded, and a child of a threaded process must not touch a lock
another thread may have held at the fork — and each supervisor would pin a copy-on-write
image of the agent's whole heap. This process is single-threaded and small: it imports
the supervisor's code once, then for every request double-forks a supervisor (a session
leader of its own, re-parented to init as soon as the intermediate child exits) and
answers with its pid once the runtime has been spawned. It also keeps a sealed copy of
the runtime's binary (:mod:`runners.runtime.sealed`) that every supervisor executes,
so that runc or crun need not copy themselves at every start.

The protocol is one JSON object per line on stdin, one reply per line on stdout::

    {"dir": "/…/containers/web-1", "max_log_bytes": 10485760, "argv": ["runc", …],
     "hide_unified_cgroup": false}
    {"pid": 4242}                 or               {"error": "…"}

The server exits when its stdin closes, i.e. when the agent ends however it ends; the
supervisors it forked are not its children any more and keep running.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runners.runtime import syscalls
from runners.runtime.bundle import ContainerDir
from runners.runtime.sealed import SealedBinaries, SealedCopy
from runners.runtime.shim import read_all, report, supervise

MODULE = "runners.runtime.forkserver"


def serve(requests: int, replies: int) -> int:
    """Answer requests read from fd ``requests`` on fd ``replies`` until end of input."""
    pending = b""
    binaries = SealedBinaries()
    while True:
        chunk = os.read(requests, 1 << 16)
        if not chunk:
            return 0
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            reply = handle(line, binaries)
            _write_all(replies, json.dumps(reply).encode() + b"\n")


@dataclass(frozen=True)
class Launch:
    """One request: the container's directory, the runtime's argv and how to run it."""

    container: ContainerDir
    argv: list[str]
    max_log_bytes: int
    hide_unified_cgroup: bool
    executable: SealedCopy | None = None


def handle(line: bytes, binaries: SealedBinaries | None = None) -> dict[str, Any]:
    """Fork one supervisor for the request ``line``; its pid or an error to reply.

    With ``binaries`` the runtime is executed from a sealed copy of its binary.
    """
    try:
        request = json.loads(line)
        launch = Launch(
            container=ContainerDir(Path(request["dir"])),
            argv=[str(arg) for arg in request["argv"]],
            max_log_bytes=int(request["max_log_bytes"]),
            hide_unified_cgroup=request.get("hide_unified_cgroup", False),
        )
        if not isinstance(launch.hide_unified_cgroup, bool):
            raise TypeError("hide_unified_cgroup must be true or false")
    except (ValueError, KeyError, TypeError) as exc:
        return {"error": f"malformed request {line[:200]!r}: {exc}"}
    if not launch.argv or launch.max_log_bytes < 1:
        return {"error": "a request needs a runtime argv and a positive max_log_bytes"}
    if binaries is not None:
        launch = replace(launch, executable=binaries.copy_of(launch.argv[0]))
    ready_read, ready_write = os.pipe()
    try:
        child = os.fork()
    except OSError as exc:
        os.close(ready_read)
        os.close(ready_write)
        return {"error": f"fork failed: {exc}"}
    if child == 0:
        os.close(ready_read)
        _intermediate(launch, ready_write)
    os.close(ready_write)
    os.waitpid(child, 0)
    message = read_all(ready_read)
    if message.startswith(b"ok "):
        return {"pid": int(message.split()[1])}
    return {"error": message.decode(errors="replace") or "the supervisor died before starting"}


def _intermediate(launch: Launch, ready: int) -> None:
    """The first child: a new session, then the supervisor, then exit at once. Never returns."""
    code = 1
    try:
        os.setsid()
        if os.fork() == 0:
            _supervisor(launch, ready)
        code = 0
    except BaseException:
        report(ready, b"supervisor fork failed: " + traceback.format_exc().encode())
    os._exit(code)


def _supervisor(launch: Launch, ready: int) -> None:
    """The grandchild: stdio away from the server's pipes, then :func:`supervise`."""
    code = 1
    try:
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)
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


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def main() -> int:
    # loaded once here rather than in every supervisor (crun's hybrid-cgroup work-around)
    syscalls.libc_available()
    return serve(sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
