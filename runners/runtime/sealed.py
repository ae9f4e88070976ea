"""A sealed in-memory copy of the OCI runtime's binary, made once and run for every start.

runc and crun guard the host's copy of their binary against a container that would
overwrite it through ``/proc/self/exe`` (CVE-2019-5736): at every start each copies
itself into a sealed memory file and executes that instead — a temporary file, a bind
mount and its removal, a copy (8.7 MB for runc) and a second exec, about 2 ms of every
crun start here. Both skip all of it when they already run from a memory file sealed
against writing, growing, shrinking and further seals, because such a file cannot be
changed by anybody. :class:`SealedBinaries` makes that file once per binary; the fork
server hands it to each supervisor, which executes the runtime from it. The file on disk
is looked at before every use and copied again when it changed (an upgraded runtime).
Where a copy cannot be made the runtime is executed from disk, as before.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from dataclasses import dataclass

_log = logging.getLogger(__name__)
# exactly the seals runc's and crun's check wants (RUNC_MEMFD_SEALS / CRUN_MEMFD_SEALS)
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
MFD_EXEC = 0x0010  # <linux/memfd.h>, Linux 6.3


@dataclass(frozen=True)
class SealedCopy:
    """A sealed copy of one binary: its descriptor and what the file looked like."""

    fd: int
    source: str
    identity: tuple[int, int, int, int]  # device, inode, size, modification time (ns)

    @property
    def path(self) -> str:
        """The path that executes the copy (in this process and its children)."""
        return f"/proc/self/fd/{self.fd}"


class SealedBinaries:
    """One sealed copy per runtime binary, kept for the life of this process."""

    def __init__(self) -> None:
        self._copies: dict[str, SealedCopy] = {}

    def copy_of(self, command: str) -> SealedCopy | None:
        """The sealed copy of ``command`` (a name on PATH or a path), made or renewed now.

        None when the binary is not found or no copy can be made; the caller then
        executes it from disk.
        """
        source = shutil.which(command)
        if source is None:
            return None
        try:
            identity = _identity(source)
            known = self._copies.get(source)
            if known is not None and known.identity == identity:
                return known
            fresh = _seal(source, identity)
        except OSError as exc:
            _log.debug("no sealed copy of %s: %s", source, exc)
            return None
        if known is not None:
            os.close(known.fd)
        self._copies[source] = fresh
        return fresh

    def held(self) -> list[tuple[int, tuple[int, int, int, int]]]:
        """Descriptor and identity of each copy held now (what a child forked now has)."""
        return [(copy.fd, copy.identity) for copy in self._copies.values()]

    def close(self) -> None:
        for copy in self._copies.values():
            os.close(copy.fd)
        self._copies.clear()


def _identity(path: str) -> tuple[int, int, int, int]:
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _seal(source: str, identity: tuple[int, int, int, int]) -> SealedCopy:
    name = os.path.basename(source)
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        # executable even where vm.memfd_noexec asks for non-executable memory files
        fd = os.memfd_create(name, flags | MFD_EXEC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a kernel before 6.3 has no MFD_EXEC
            raise
        fd = os.memfd_create(name, flags)
    try:
        with open(source, "rb") as binary:
            size = os.fstat(binary.fileno()).st_size
            sent = 0
            while sent < size:
                count = os.sendfile(fd, binary.fileno(), sent, size - sent)
                if count == 0:
                    break
                sent += count
        if sent != size or _identity(source) != identity:
            raise OSError(f"{source} changed while it was being copied")
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return SealedCopy(fd=fd, source=source, identity=identity)
