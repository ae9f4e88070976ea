"""The per-container supervisor: runs the OCI runtime in the foreground and outlives the agent.

:func:`supervise` is the supervisor's whole job. The agent normally runs it in a process
forked by its fork server (:mod:`runners.runtime.forkserver`), which costs a few
milliseconds; this module is also a command of its own, which costs a fresh interpreter
per container but needs no helper process::

    python -m runners.runtime.shim --dir CONTAINER_DIR [--run STATE_DIR] [--max-log-bytes N]
        [--hide-unified-cgroup] -- RUNTIME ARGV...

Either way the supervisor lives in a session of its own, re-parented to init, so it
survives an agent restart; the agent re-adopts the container from the files in its
directory. ``shim.pid`` holds the supervisor's pid and its start time (clock ticks after
boot, from ``/proc/PID/stat``): a pid alone may have been reused by the time an agent
reads it again, the pair never is.

The supervisor copies the container's stdout and stderr into size-capped log files and,
when ``runc run`` returns (with the container's exit status), writes ``exit.json``; it
is the only place an exit code can come from, since runc forgets a container once its
process is gone.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from runners.runtime import hybrid
from runners.runtime.bundle import LOG_MODE, ContainerDir, ExitRecord
from runners.runtime.sealed import SealedCopy

DEFAULT_MAX_LOG_BYTES = 10 << 20
_CHUNK = 1 << 16
MODULE = "runners.runtime.shim"


def open_log(path: Path) -> BinaryIO:
    """``path`` opened for appending, made readable by root and its group only if new."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
    return os.fdopen(fd, "ab")  # lives as long as the container


class CappedLog:
    """An append-only log file rotated to ``NAME.1`` before it would pass ``max_bytes``.

    At most two files of at most ``max_bytes`` each exist, so a chatty container never
    fills the host's disk; a write that does not fit a fresh file is split.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"log cap for {path} must be at least 1 byte (got {max_bytes})")
        self.path = path
        self.max_bytes = max_bytes
        self._file = open_log(path)
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        while data:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            part, data = data[: self.max_bytes], data[self.max_bytes :]
            self._file.write(part)
            self._size += len(part)
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = open_log(self.path)
        self._size = 0

    def close(self) -> None:
        self._file.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--run", type=Path, help="The state directory, if not --dir.")
    parser.add_argument("--max-log-bytes", type=int, default=DEFAULT_MAX_LOG_BYTES)
    parser.add_argument("--hide-unified-cgroup", action="store_true")
    parser.add_argument("runtime", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    runtime = args.runtime[1:] if args.runtime[:1] == ["--"] else args.runtime
    if not runtime:
        parser.error("the runtime command is missing after --")

    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child:
        os.close(ready_write)
        message = read_all(ready_read)
        if message.startswith(b"ok"):
            print(child, flush=True)
            return 0
        sys.stderr.write(
            message.decode(errors="replace") or "the supervisor died before starting\n"
        )
        return 1

    os.close(ready_read)
    code = 1
    try:
        os.setsid()
        os.chdir("/")
        _detach_stdio()
        code = supervise(
            ContainerDir(args.dir, args.run),
            runtime,
            args.max_log_bytes,
            ready_write,
            hide_unified_cgroup=args.hide_unified_cgroup,
        )
    except BaseException:
        traceback.print_exc()
        report(ready_write, b"supervisor failed: " + traceback.format_exc().encode())
    os._exit(code)


def supervise(
    container: ContainerDir,
    runtime: list[str],
    max_log_bytes: int,
    ready: int,
    *,
    hide_unified_cgroup: bool = False,
    executable: SealedCopy | None = None,
) -> int:
    """Run ``runtime`` to completion, logging its output and recording how it ended.

    With ``hide_unified_cgroup`` this process, and so the runtime, moves into a private
    mount namespace without the host's cgroup2 mount (crun on a hybrid-cgroup host); it
    is single-threaded, so that is safe, and done here rather than between fork and exec
    the runtime is spawned without copying this process. ``executable`` is a sealed
    copy of the runtime's binary to execute instead of the one on disk
    (:mod:`runners.runtime.sealed`).
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        # a Python handler, not SIG_IGN: ignored dispositions would be inherited through
        # exec by the runtime and the container, which must still die of SIGTERM
        signal.signal(sig, _ignore)
    me = os.getpid()
    container.shim_pid.write_text(f"{me} {process_start_time(me) or 0}\n")
    stdout = CappedLog(container.stdout_log, max_log_bytes)
    stderr = CappedLog(container.stderr_log, max_log_bytes)
    try:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        # from here on, whatever happens ends in exit.json (or, if this process dies, in
        # a dead supervisor the agent sees): the starter need not wait for the exec
        report(ready, b"ok %d" % me)
        try:
            if hide_unified_cgroup:
                try:
                    hybrid.hide_unified_cgroup()
                except OSError as exc:
                    raise OSError(
                        f"hiding the host's cgroup2 mount from it: {exc}; crun on a"
                        " hybrid-cgroup host needs an agent allowed to make mount"
                        " namespaces (root), or start the agent with --runtime runc"
                    ) from exc
            entry = _entry(container, executable) if executable else None
            try:
                proc = subprocess.Popen(
                    runtime,
                    executable=str(entry or executable.path) if executable else None,
                    pass_fds=(executable.fd,) if executable else (),
                    stdin=subprocess.DEVNULL,
                    stdout=out_write,
                    stderr=err_write,
                )
            finally:
                if entry is not None:
                    entry.unlink(missing_ok=True)  # the runtime runs: the name was for exec
        except (OSError, subprocess.SubprocessError) as exc:
            container.write_exit(ExitRecord(code=127, started=False, error=f"{runtime[0]}: {exc}"))
            return 0
        finally:
            os.close(out_write)
            os.close(err_write)
        _copy({out_read: stdout, err_read: stderr})
        code = proc.wait()
    finally:
        stdout.close()
        stderr.close()
    container.write_exit(ExitRecord(code=code, started=container.container_pid.exists()))
    return 0


def _entry(container: ContainerDir, executable: SealedCopy) -> Path | None:
    """A link in the container's directory that executes ``executable``, named like it.

    Executed through ``/proc/self/fd/N`` the runtime would be called ``N`` in ``ps``
    and ``pgrep crun`` would not find it. None when a file of that name is in the way.
    """
    link = container.state / os.path.basename(executable.source)
    if link.is_symlink():  # left by a supervisor that died between link and exec
        link.unlink()
    try:
        os.symlink(executable.path, link)
    except OSError:
        return None
    return link


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[-1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # field 22 of proc(5); the two before ")" and the name are gone
    return int(fields[19])


def read_supervisor(path: Path) -> tuple[int, int | None] | None:
    """``(pid, start time)`` from a ``shim.pid`` file; the time is None in the old format."""
    try:
        parts = path.read_text().split()
    except FileNotFoundError:
        return None
    if not parts or not all(part.isdigit() for part in parts[:2]):
        return None
    start = int(parts[1]) if len(parts) > 1 and int(parts[1]) else None
    return int(parts[0]), start


def is_supervisor(path: Path) -> bool:
    """True while the supervisor recorded in ``path`` (a ``shim.pid``) is alive.

    Without a recorded start time (a file from an older berth) the process's command
    line must name this module and the container directory.
    """
    recorded = read_supervisor(path)
    if recorded is None:
        return False
    pid, start = recorded
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[-1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if fields[0] in (b"Z", b"X"):
        return False
    if start is not None:
        return int(fields[19]) == start
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return MODULE.encode() in cmdline and str(path.parent).encode() in cmdline


def _copy(streams: dict[int, CappedLog]) -> None:
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(streams)
        while open_fds:
            for key, _ in selector.select():
                fd = int(key.fd)
                data = os.read(fd, _CHUNK)
                if data:
                    streams[fd].write(data)
                else:
                    selector.unregister(fd)
                    os.close(fd)
                    open_fds.discard(fd)


def _detach_stdio() -> None:
    # stdout is the pipe the agent reads our pid from; holding it would keep the agent
    # waiting for EOF for as long as the container runs. stderr (shim.log) stays.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)


def report(fd: int, message: bytes) -> None:
    """Write ``message`` to the pipe ``fd`` and close it (once; later calls do nothing)."""
    try:
        os.write(fd, message)
        os.close(fd)
    except OSError:
        pass  # already reported and closed


def read_all(fd: int) -> bytes:
    """Everything until EOF on the pipe ``fd``, which is then closed."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Survive the signals meant for the agent's process group; stop goes through runc."""


if __name__ == "__main__":
    sys.exit(main())
