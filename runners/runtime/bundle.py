"""A container's directories on the host: OCI bundle, copy-on-write layer, logs, exit status.

What a container needs across a reboot is kept apart from what only matters while the
host is up (as podman keeps its graphroot and runroot apart): the *layer directory* is on
disk, the *state directory* belongs on a tmpfs, where a start writes its files without
waiting on a journal. An agent that restarts finds its containers again by listing
both. Given one directory, everything is in it::

    <layer dir>/           on disk (``path``)
        upper/  work/      the container's copy-on-write layer and overlayfs's scratch dir
        stdout.log         the container's output (rotated to stdout.log.1 at a size cap)
        stderr.log
    <state dir>/           on a tmpfs (``state``; the layer dir itself when none is given)
        config.json        the OCI runtime spec (its root.path is rootfs/)
        rootfs/            the overlay mount point
        etc/               hosts, hostname and resolv.conf, bind-mounted into the container
        runtime.log        the OCI runtime's own messages (JSON lines)
        shim.pid  shim.log the supervisor's pid and its own diagnostics
        container.pid      the container's init pid, written by the runtime
        start.gate         a FIFO the container waits on before its process runs (optional)
        exit.json          written once by the supervisor when the container is gone
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.errors import RuntimeFailure
from runners.runtime.rootfs import mounted_at
from runners.runtime.spec import EtcFiles, IdMapping

LOG_MODE = 0o640  # the container's output: root and its group only


@dataclass(frozen=True)
class ExitRecord:
    """How a container ended: its exit code (128+N for signal N) and whether it ever ran."""

    code: int | None
    started: bool
    error: str = ""


@dataclass(frozen=True)
class ContainerDir:
    """The paths of one container's directories (see the module docstring).

    ``path`` is the layer directory; ``run`` the state directory, ``None`` for the same
    directory (``state`` is the one in use).
    """

    path: Path
    run: Path | None = None

    @property
    def state(self) -> Path:
        return self.run or self.path

    @property
    def config(self) -> Path:
        return self.state / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.state / "rootfs"

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def etc(self) -> Path:
        return self.state / "etc"

    @property
    def stdout_log(self) -> Path:
        return self.path / "stdout.log"

    @property
    def stderr_log(self) -> Path:
        return self.path / "stderr.log"

    @property
    def runtime_log(self) -> Path:
        return self.state / "runtime.log"

    @property
    def shim_pid(self) -> Path:
        return self.state / "shim.pid"

    @property
    def shim_log(self) -> Path:
        return self.state / "shim.log"

    @property
    def container_pid(self) -> Path:
        return self.state / "container.pid"

    @property
    def exit_file(self) -> Path:
        return self.state / "exit.json"

    @property
    def gate(self) -> Path:
        return self.state / "start.gate"

    def make_gate(self) -> str:
        """Create the start gate FIFO (root's only); its path, for the runtime spec."""
        os.mkfifo(self.gate, 0o600)
        return str(self.gate)

    def etc_files(self) -> EtcFiles:
        return EtcFiles(
            hosts=str(self.etc / "hosts"),
            hostname=str(self.etc / "hostname"),
            resolv_conf=str(self.etc / "resolv.conf"),
        )

    def exists(self) -> bool:
        """True while either directory is there (a creation cut short may leave one)."""
        return self.path.is_dir() or self.state.is_dir()

    def create(self, id_mapping: IdMapping | None = None) -> None:
        """Make both directories (:meth:`create_layer`, then :meth:`create_state`)."""
        self.create_layer(id_mapping)
        self.create_state()

    def create_layer(self, id_mapping: IdMapping | None = None) -> None:
        """Make the layer directory; with an id mapping, the upper dir belongs to container root.

        The directory is searchable by everyone (0711) when it is the state directory
        too: a user-namespaced container's root is an unprivileged host user, and it must
        reach its rootfs and bind-mount sources. Logs and state files are not
        world-readable.
        """
        _make_fresh(self.path, 0o711 if self.run is None else 0o700)
        self.upper.mkdir()
        self.work.mkdir()
        os.chmod(self.work, 0o700)
        # what the container sees as its /
        os.chmod(self.upper, 0o755)  # noqa: S103
        if id_mapping is not None:
            os.chown(self.upper, id_mapping.host_uid, id_mapping.host_gid)
        # made here, where they cost nothing to wait for: the supervisor opens them
        # before it runs the runtime, where a creation on this disk would delay the start
        _write_new(self.stdout_log, "", LOG_MODE)
        _write_new(self.stderr_log, "", LOG_MODE)

    def create_state(self) -> None:
        """Make the state directory's tree (the layer directory's, without a separate one)."""
        if self.run is not None:
            _make_fresh(self.run, 0o711)
        self.rootfs.mkdir()
        self.etc.mkdir()
        # the parent of the container's /etc files
        os.chmod(self.etc, 0o755)  # noqa: S103

    def write_config(self, config: dict[str, Any]) -> None:
        # compact: only then does json encode in C (the indented form costs ~2 ms a start)
        _write_new(self.config, json.dumps(config, sort_keys=True) + "\n", 0o600)

    def read_config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config.read_text())
        return data

    def write_etc(self, *, hostname: str, hosts: str, resolv_conf: str) -> None:
        """The container's ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``."""
        _write_new(self.etc / "hostname", hostname.rstrip("\n") + "\n", 0o644)
        _write_new(self.etc / "hosts", hosts, 0o644)
        _write_new(self.etc / "resolv.conf", resolv_conf, 0o644)

    def write_exit(self, record: ExitRecord) -> None:
        data = {"exit_code": record.code, "started": record.started, "error": record.error}
        _write_atomic(self.exit_file, json.dumps(data) + "\n", 0o644)

    def read_exit(self) -> ExitRecord | None:
        try:
            data = json.loads(self.exit_file.read_text())
        except FileNotFoundError:
            return None
        code = data.get("exit_code")
        return ExitRecord(
            code=code if isinstance(code, int) else None,
            started=bool(data.get("started")),
            error=str(data.get("error") or ""),
        )

    def remove(self) -> None:
        """Delete both directories; refused while the root filesystem is still mounted."""
        if self.rootfs.exists() and mounted_at(self.rootfs):
            raise RuntimeFailure(
                f"container directory {self.state}: its root filesystem is still mounted;"
                " unmount it before removing the directory"
            )
        for directory in (self.state, self.path):
            if directory.is_dir():
                shutil.rmtree(directory, ignore_errors=False)


def default_hosts(hostname: str) -> str:
    """An ``/etc/hosts`` naming localhost and the container itself."""
    return (
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )


def _make_fresh(path: Path, mode: int) -> None:
    try:
        path.mkdir(parents=True, exist_ok=False)
    except FileExistsError as exc:
        raise RuntimeFailure(
            f"container directory {path} already exists; container ids are never"
            " reused, so remove the old container first"
        ) from exc
    os.chmod(path, mode)


def _write_new(path: Path, text: str, mode: int) -> None:
    """Write a file of a directory being prepared, which nobody reads yet.

    No staged copy and rename (two fewer metadata changes, which this disk makes slow):
    a directory left half-written by a dead agent has no record and is removed whole at
    the next start. A file that is there already is replaced atomically instead.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        _write_atomic(path, text, mode)
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(fd, mode)  # whatever the umask took away
        handle.write(text)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(staged, mode)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
