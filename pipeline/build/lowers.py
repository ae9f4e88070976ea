"""A stage's file system so far: its layers unpacked once, looked up without mounting.

Layers are unpacked by :class:`runners.runtime.layers.LayerStore` (overlayfs-style
whiteouts). :class:`LowerView` answers "what is at this path" the way the overlay
would — topmost layer first, stopping at whiteouts and opaque directories — so COPY
can learn whether a destination is a directory or read ``/etc/passwd`` for ``--chown``
without mounting anything.

A layer this build just wrote with COPY need not be unpacked for that: its entries are
still in memory (:class:`LayerIndex`), so the next COPY looks there while the layer is
unpacked in the background for the next RUN (:class:`Prefetcher`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from pipeline.build.cache import BuildCache
from runners.errors import LayerError
from runners.oci.digest import Digest
from runners.oci.layer import EntryKind, LayerEntry, entry_tarinfo, source_identity
from runners.oci.manifest import Descriptor
from runners.runtime.confined import member_parts

if TYPE_CHECKING:
    from runners.runtime.unpack import Content

_log = logging.getLogger(__name__)

# overlayfs marks a directory that hides the layers below it with this attribute
OPAQUE_XATTR = "trusted.overlay.opaque"


def unpack_layers(cache: BuildCache, layers: Sequence[Descriptor]) -> list[Path]:
    """The unpacked directories of ``layers`` (bottom first), unpacking what is new."""
    from runners.runtime.layers import LayerStore

    store = LayerStore(cache.layers_root)
    found = []
    for layer in layers:
        found.append(
            store.ensure_layer(layer.digest, partial(cache.images.open_blob, layer.digest))
        )
    return found


def unpack_stored(cache: BuildCache, digest: Digest) -> None:
    """Unpack the layers of image ``digest`` from the cache's store now, as a pull does for
    buildah or podman, so that the first build from it does not; an index (several
    platforms) is left for the build, which picks the platform."""
    from runners.oci.manifest import ImageManifest, parse_manifest

    manifest = parse_manifest(cache.images.read_blob(digest))
    if isinstance(manifest, ImageManifest):
        unpack_layers(cache, manifest.layers)


MAX_TEXT = 1 << 20  # /etc/passwd and /etc/group, read for --chown

_KIND_BITS = {
    EntryKind.FILE: stat.S_IFREG,
    EntryKind.HARDLINK: stat.S_IFREG,
    EntryKind.DIR: stat.S_IFDIR,
    EntryKind.SYMLINK: stat.S_IFLNK,
}


class LayerIndex:
    """A COPY layer's entries by name: lookups like an unpacked directory, no disk.

    Only for layers made of plain files, directories and links (what COPY writes);
    ``from_entries`` returns None for anything else, and the layer is unpacked instead.
    """

    def __init__(self, entries: dict[str, LayerEntry]) -> None:
        self.entries = entries

    @classmethod
    def from_entries(cls, entries: Iterable[LayerEntry]) -> LayerIndex | None:
        found = {}
        for entry in entries:
            if entry.kind not in _KIND_BITS:
                return None
            found[entry.name.strip("/")] = entry
        return cls(found)

    def lookup(self, parts: Sequence[str]) -> LayerEntry | None:
        """The entry at ``parts`` when this layer has it; None when it is not here."""
        for depth in range(1, len(parts) + 1):
            entry = self.entries.get("/".join(parts[:depth]))
            if entry is None:
                return None  # COPY writes every parent, so nothing deeper is here either
            if depth == len(parts):
                return entry
            if entry.kind is not EntryKind.DIR:
                return None
        return None

    def stat_of(self, entry: LayerEntry) -> os.stat_result:
        if entry.kind is EntryKind.HARDLINK:
            target = self.entries.get(entry.linkname.strip("/"))
            if target is not None and target.kind is EntryKind.FILE:
                entry = target
        mode = _KIND_BITS[entry.kind] | entry.mode
        # ino: identity within this layer; dev -1 keeps it apart from any real file
        ino = id(entry)
        return os.stat_result(
            (mode, ino, -1, 1, entry.uid, entry.gid, entry.size,
             entry.mtime, entry.mtime, entry.mtime)
        )  # fmt: skip

    def read_text(self, entry: LayerEntry) -> str | None:
        if entry.kind is EntryKind.HARDLINK:
            target = self.entries.get(entry.linkname.strip("/"))
            if target is None:
                return None
            entry = target
        if entry.kind is not EntryKind.FILE:
            return None
        if entry.data is not None:
            return entry.data.decode(errors="replace")
        if entry.source is not None:
            with entry.source.open("rb") as stream:
                return stream.read(MAX_TEXT).decode(errors="replace")
        if entry.reader is not None:
            with entry.reader() as stream:
                return stream.read(MAX_TEXT).decode(errors="replace")
        return None


Layer = Path | LayerIndex


class LowerView:
    """Read-only lookups through layers given bottom first (directories or indexes)."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.top_first = list(reversed(layers))

    def lstat(self, rel: str) -> os.stat_result | None:
        found = self._find(rel)
        return None if found is None else found[1]

    def _find(self, rel: str) -> tuple[Layer, os.stat_result, LayerEntry | None] | None:
        parts = [p for p in rel.split("/") if p]
        if not parts:
            top = self.top_first[0] if self.top_first else None
            if isinstance(top, Path):
                return top, os.lstat(top), None
            return None
        for layer in self.top_first:
            if isinstance(layer, LayerIndex):
                entry = layer.lookup(parts)
                if entry is not None:
                    return layer, layer.stat_of(entry), entry
                continue
            hidden = False
            for depth in range(1, len(parts) + 1):
                path = layer.joinpath(*parts[:depth])
                try:
                    info = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    break
                if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                    hidden = True  # a whiteout: deleted in this layer
                    break
                if depth == len(parts):
                    return layer, info, None
                if not stat.S_ISDIR(info.st_mode):
                    break
                if _opaque(path):
                    # lower layers cannot show through below this directory
                    hidden = True
                    break
            if hidden:
                return None
        return None

    def read_text(self, rel: str) -> str | None:
        found = self._find(rel)
        if found is None or not stat.S_ISREG(found[1].st_mode):
            return None
        layer, _, entry = found
        if isinstance(layer, LayerIndex):
            return layer.read_text(entry) if entry is not None else None
        parts = [p for p in rel.split("/") if p]
        return layer.joinpath(*parts).read_text(errors="replace")

    def is_dir(self, rel: str) -> bool:
        info = self.lstat(rel)
        return info is not None and stat.S_ISDIR(info.st_mode)


class Prefetcher:
    """Unpacks layers into the build cache's layer store on background threads.

    :func:`unpack_layers` of the same layer later waits for it (the layer store's
    per-layer lock) or finds it done. Failures here are only logged: whoever needs
    the layer unpacks it again and sees the error itself.
    """

    def __init__(self, cache: BuildCache, workers: int = 2) -> None:
        self.cache = cache
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[object]] = []
        self._writes: list[tuple[Future[Digest], Future[object]]] = []

    def submit(self, layer: Descriptor) -> None:
        """Unpack ``layer`` from its blob."""
        self._run(unpack_layers, self.cache, [layer])

    def write(
        self,
        members: list[Member],
        digest: Future[Digest],
        *,
        digests: Mapping[str, str] | None = None,
        donor_key: str | None = None,
    ) -> None:
        """Write a layer's directory from ``members`` (see :func:`layer_members`) while
        its blob is still being written; it is filed under ``digest`` once that is known
        (and thrown away if the blob's writing fails). With ``digests`` (see
        :func:`member_digests`) and ``donor_key``, files unchanged since the directory
        last written under that key are hard-linked from it, and this one is remembered
        for the next time."""
        job = partial(_write_staged, self.cache, members, digest, digests, donor_key)
        self._writes.append((digest, self._run(job)))

    def unpacked(self, layers: Sequence[Descriptor]) -> list[Path]:
        """:func:`unpack_layers`, after the directories being written for any of
        ``layers`` are done: the layer store's lock is taken only to file a written
        directory, so without this wait the caller would unpack the blob a second time
        beside the writer."""
        wanted = {layer.digest for layer in layers}
        for digest, written in self._writes:
            if digest.done() and digest.exception() is None and digest.result() in wanted:
                with contextlib.suppress(Exception):  # the unpack below reports it
                    written.result()
        return unpack_layers(self.cache, layers)

    def _run(self, *call: object) -> Future[object]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="unpack")
        function, *args = call
        future: Future[object] = self._pool.submit(function, *args)  # type: ignore[arg-type]
        self._pending.append(future)
        return future

    def close(self) -> None:
        """Wait for what was started (nothing keeps writing into the cache after a build)."""
        for future in self._pending:
            try:
                future.result()
            except Exception:  # whoever needs the layer unpacks it again and reports it
                _log.debug("background unpack failed", exc_info=True)
        self._pending.clear()
        self._writes.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _write_staged(
    cache: BuildCache,
    members: list[Member],
    digest: Future[Digest],
    digests: Mapping[str, str] | None,
    donor_key: str | None,
) -> Path:
    from runners.runtime.layers import LayerStore
    from runners.runtime.unpack import write_members

    workspace = cache.scratch("layer-")
    try:
        staged = workspace / "layer"
        staged.mkdir()
        donor = cache.donor(donor_key) if donor_key and digests else None
        write_members(members, staged, digests=digests, donor=donor)
        layer = digest.result()
        path = LayerStore(cache.layers_root).adopt(layer, staged)
        if donor_key and digests:
            cache.record_donor(donor_key, layer, digests)
        return path
    finally:
        # removes the staged copy too when the layer was there already or this failed
        cache.release_scratch(workspace)


Member: TypeAlias = "tuple[tarfile.TarInfo, Content | None]"


def layer_members(
    entries: Sequence[LayerEntry], sources: Mapping[Path, tuple[int, int, int]]
) -> list[Member] | None:
    """A COPY layer's entries as members to write its directory from.

    ``sources`` is what each source file was when COPY selected it (size, mtime and
    inode: :func:`runners.oci.layer.source_identity`); a file found different when its
    copy is written fails that write, as it fails the blob's (see
    :class:`runners.oci.layer.LayerWriter`). None when an entry streams from a reader
    (archive members) or its source is not in ``sources``.
    """
    members: list[Member] = []
    for entry in entries:
        info = entry_tarinfo(entry)
        info.name = info.name.rstrip("/")  # as tarfile reads a directory's name
        content: Content | None = None
        if entry.kind is EntryKind.FILE:
            if entry.data is not None:
                content = partial(io.BytesIO, entry.data)
            elif entry.source is not None and entry.source in sources:
                content = partial(_Unchanged, entry.source, sources[entry.source])
            else:
                return None
        members.append((info, content))
    return members


def member_digests(
    members: Sequence[Member], entries: Sequence[LayerEntry], file_digests: Mapping[Path, bytes]
) -> dict[str, str]:
    """The content digest of each file member whose source was hashed (by member name,
    as :func:`runners.runtime.unpack.write_members` names it); ``members`` are
    :func:`layer_members` of ``entries``, one for one."""
    found = {}
    for (info, _), entry in zip(members, entries, strict=True):
        if entry.kind is EntryKind.FILE and entry.source is not None:
            digest = file_digests.get(entry.source)
            if digest is not None:
                found["/".join(member_parts(info.name))] = digest.hex()
    return found


class _Unchanged(io.FileIO):
    """A source file opened for reading that must be as it was when COPY selected it."""

    def __init__(self, path: Path, identity: tuple[int, int, int]) -> None:
        super().__init__(path, "rb")
        self.identity = identity
        self._check()

    def _check(self) -> None:
        if source_identity(os.fstat(self.fileno())) != self.identity:
            name = self.name
            super().close()
            raise LayerError(f"{name}: changed while the build ran; build again")

    def close(self) -> None:
        if not self.closed:
            self._check()  # not rewritten while it was copied either
        super().close()


def view_of(
    cache: BuildCache, layers: Sequence[Descriptor], indexes: dict[Digest, LayerIndex]
) -> LowerView:
    """A view of ``layers`` that unpacks only those without an in-memory index."""
    on_disk = [layer for layer in layers if layer.digest not in indexes]
    dirs = iter(unpack_layers(cache, on_disk))
    return LowerView(
        [indexes[layer.digest] if layer.digest in indexes else next(dirs) for layer in layers]
    )


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False
