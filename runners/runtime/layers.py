"""The host's layer store: every layer unpacked once, in a directory named by its digest.

``root/layers/sha256/<hex>/`` holds one unpacked layer, the read-only lower directory
every container of every image that uses the layer shares. :meth:`LayerStore.ensure_layer`
unpacks a layer the first time it is asked for; concurrent callers, in this process
(a lock per digest) or in others (``flock`` on a lock file), wait for that one unpack,
and the staged directory is renamed into place so nobody sees it half-written.

Owners inside a store are shifted for one user-namespace mapping; the store records
that mapping and refuses to be used with another.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from runners.errors import DigestError, RuntimeFailure
from runners.oci.digest import Digest
from runners.runtime.compression import Readable
from runners.runtime.unpack import UnpackOptions, unpack_layer

LayerOpener = Callable[[], AbstractContextManager[Readable]]
"""Opens a layer blob for reading (a file, a registry response); called only when needed."""

_ID_MARKER = "idmap"


class LayerStore:
    """Unpacked layers below ``root``, one directory per digest, each unpacked once."""

    def __init__(self, root: Path, options: UnpackOptions | None = None) -> None:
        self.root = root
        self.options = options or UnpackOptions()
        self._guard = threading.Lock()
        self._locks: dict[Digest, threading.Lock] = {}

    @property
    def layers_dir(self) -> Path:
        return self.root / "layers"

    def path_of(self, digest: Digest) -> Path:
        """Where the layer ``digest`` is (or would be) unpacked."""
        return self.layers_dir / digest.algorithm / digest.hex

    def has(self, digest: Digest) -> bool:
        return self.path_of(digest).is_dir()

    def digests(self) -> list[Digest]:
        """Every layer present, sorted."""
        found = []
        if self.layers_dir.is_dir():
            for algorithm_dir in self.layers_dir.iterdir():
                if not algorithm_dir.is_dir() or algorithm_dir.name.startswith("."):
                    continue
                for entry in algorithm_dir.iterdir():
                    if entry.name.startswith(".") or not entry.is_dir():
                        continue
                    with contextlib.suppress(DigestError):
                        found.append(Digest.parse(f"{algorithm_dir.name}:{entry.name}"))
        return sorted(found)

    def ensure_layer(self, digest: Digest, opener: LayerOpener) -> Path:
        """The directory of layer ``digest``, unpacking what ``opener`` yields if it is new.

        The unpacked content must hash to ``digest`` (as diff id or as blob digest), or
        :class:`DigestError` is raised and nothing is kept.
        """

        def unpack(path: Path) -> None:
            with opener() as blob:
                unpack_layer(blob, path, self.options, expect=digest)

        return self._once(digest, unpack)

    def adopt(self, digest: Digest, staged: Path) -> Path:
        """Layer ``digest``'s directory, moving ``staged`` (same file system) there if new.

        For a directory written from the very entries of the layer's blob (see
        :func:`runners.runtime.unpack.write_members`): no digest is checked, the caller
        vouches for it. When the layer is already there, ``staged`` is left as it was.
        """

        def move(path: Path) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, path)

        return self._once(digest, move)

    def _once(self, digest: Digest, write: Callable[[Path], object]) -> Path:
        """``digest``'s directory; ``write`` makes it under the layer's lock if it is new."""
        path = self.path_of(digest)
        if path.is_dir():
            return path
        with self._locked(digest):
            if path.is_dir():
                return path
            self._check_id_mapping()
            self._remove_debris(digest)
            write(path)
        return path

    def remove(self, digest: Digest) -> bool:
        """Delete layer ``digest``; False when it was not there. No container may use it."""
        path = self.path_of(digest)
        with self._locked(digest):
            if not path.is_dir():
                return False
            # Renamed away first: from then on nobody takes a half-deleted layer for a whole one.
            doomed = path.with_name(f".{digest.hex}.removing")
            os.rename(path, doomed)
            shutil.rmtree(doomed)
        return True

    # -- locking -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, digest: Digest) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock:
            lock_dir = self.layers_dir / ".locks"
            lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                lock_dir / f"{digest.algorithm}-{digest.hex}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _remove_debris(self, digest: Digest) -> None:
        # A process killed mid-unpack leaves its staging directory; holding the digest's
        # lock, nobody else can be writing one now.
        parent = self.path_of(digest).parent
        if parent.is_dir():
            for entry in parent.glob(f".{digest.hex}.*"):
                shutil.rmtree(entry, ignore_errors=True)

    def _check_id_mapping(self) -> None:
        wanted = f"{self.options.uid_shift}:{self.options.gid_shift}\n"
        marker = self.layers_dir / _ID_MARKER
        self.layers_dir.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            staged = marker.with_name(f".{_ID_MARKER}.{os.getpid()}.{threading.get_ident()}")
            staged.write_text(wanted)
            with contextlib.suppress(FileExistsError):
                os.link(staged, marker)  # exclusive: the first writer decides
            staged.unlink()
        recorded = marker.read_text()
        if recorded != wanted:
            raise RuntimeFailure(
                f"layer store {self.root}: its layers are owned for id shift"
                f" {recorded.strip()!r} but this host uses {wanted.strip()!r};"
                " use a separate store directory for each id mapping"
            )
