"""COPY and ADD: from the build context (or another stage) straight into a layer tar.

No container and no mount: the selected files are written as tar entries below the
destination, with Docker's rules — a directory source copies its contents, several
sources need a destination ending in ``/``, missing parents are created ``0755``
root-owned, ``--chown``/``--chmod`` override owner and mode (never the builder's own
ids), symlinks are copied as links and never followed. ``ADD`` of a local tar archive
(plain, gzip, bzip2 or xz) extracts it instead.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.build.context import Selected, SourceTree
from pipeline.build.errors import BuildError
from runners.oci.layer import EntryKind, LayerEntry, clamp


@dataclass(frozen=True)
class CopyRequest:
    """A resolved COPY/ADD: expanded source words, absolute destination, overrides."""

    sources: tuple[str, ...]
    dest: str  # absolute; ends with "/" when the destination is a directory
    uid: int | None = None
    gid: int | None = None
    chmod: int | None = None
    extract_archives: bool = False
    heredocs: tuple[tuple[str, str], ...] = ()  # (name, content) for COPY <<EOF


DirLookup = Callable[[str], os.stat_result | None]


def select_all(tree: SourceTree, request: CopyRequest) -> list[tuple[str, list[Selected]]]:
    """Every source word's selection; raise naming the word that selects nothing."""
    found = []
    for word in request.sources:
        if word.startswith("<<"):
            continue
        try:
            found.append((word, tree.select(word)))
        except BuildError as exc:
            raise BuildError(f"COPY {word}: {exc}") from exc
    return found


def copy_entries(
    tree: SourceTree,
    selections: list[tuple[str, list[Selected]]],
    request: CopyRequest,
    lower: DirLookup,
    epoch: int,
) -> list[LayerEntry]:
    """The sorted tar entries of one COPY/ADD."""
    roots = [item for _, selected in selections for item in selected if item.dest_rel == ""]
    many = len(request.sources) > 1 or len(roots) > 1
    dest = request.dest
    dest_rel = dest.strip("/")
    dest_info = lower(dest_rel) if dest_rel else None
    into_dir = (
        dest.endswith("/")
        or not dest_rel
        or (dest_info is not None and stat.S_ISDIR(dest_info.st_mode))
    )
    if many and not into_dir and any(not stat.S_ISDIR(r.info.st_mode) for r in roots):
        raise BuildError(
            f"destination {dest!r}: with several sources the destination must be a directory"
            " ending in '/'"
        )
    entries: dict[str, LayerEntry] = {}
    for _word, selected in selections:
        for item in selected:
            is_dir = stat.S_ISDIR(item.info.st_mode)
            if item.dest_rel:
                target = f"{dest_rel}/{item.dest_rel}" if dest_rel else item.dest_rel
            elif is_dir:
                target = dest_rel
            else:
                name = item.rel.rsplit("/", 1)[-1]
                target = (
                    f"{dest_rel}/{name}"
                    if (into_dir or many) and dest_rel
                    else (dest_rel if dest_rel else name)
                )
            if (
                request.extract_archives
                and not item.dest_rel
                and stat.S_ISREG(item.info.st_mode)
                and _is_archive(tree.path(item.rel))
            ):
                for entry in _archive_entries(tree.path(item.rel), dest_rel, epoch):
                    entries[entry.name] = entry
                continue
            if not target:
                continue  # the destination "/" itself keeps the image's root
            entries[target] = _entry(tree, item, target, request, epoch)
    for name, content in request.heredocs:
        target = f"{dest_rel}/{name}" if dest.endswith("/") else dest_rel
        data = content.encode()
        entries[target] = LayerEntry(
            target,
            EntryKind.FILE,
            mode=request.chmod if request.chmod is not None else 0o644,
            uid=request.uid or 0,
            gid=request.gid or 0,
            mtime=epoch,
            size=len(data),
            data=data,
        )
    for name in list(entries):
        _add_parents(entries, name, lower, epoch, request)
    return [entries[name] for name in sorted(entries)]


def _entry(
    tree: SourceTree, item: Selected, target: str, request: CopyRequest, epoch: int
) -> LayerEntry:
    info = item.info
    mode = stat.S_IMODE(info.st_mode)
    if request.chmod is not None:
        mode = request.chmod
    uid = request.uid if request.uid is not None else 0
    gid = request.gid if request.gid is not None else 0
    mtime = clamp(info.st_mtime, epoch)
    if stat.S_ISDIR(info.st_mode):
        return LayerEntry(target, EntryKind.DIR, mode=mode, uid=uid, gid=gid, mtime=mtime)
    if stat.S_ISLNK(info.st_mode):
        link = os.readlink(tree.path(item.rel))
        return LayerEntry(
            target, EntryKind.SYMLINK, mode=0o777, uid=uid, gid=gid, mtime=mtime, linkname=link
        )
    if stat.S_ISREG(info.st_mode):
        return LayerEntry(
            target,
            EntryKind.FILE,
            mode=mode,
            uid=uid,
            gid=gid,
            mtime=mtime,
            size=info.st_size,
            source=tree.path(item.rel),
        )
    raise BuildError(f"{item.rel}: devices, FIFOs and sockets cannot be copied into an image")


def _add_parents(
    entries: dict[str, LayerEntry],
    name: str,
    lower: DirLookup,
    epoch: int,
    request: CopyRequest,
) -> None:
    parts = name.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if parent in entries:
            continue
        info = lower(parent)
        if info is not None and stat.S_ISDIR(info.st_mode):
            # an existing directory keeps its metadata (the layer only repeats it)
            entries[parent] = LayerEntry(
                parent,
                EntryKind.DIR,
                mode=stat.S_IMODE(info.st_mode),
                uid=info.st_uid,
                gid=info.st_gid,
                mtime=clamp(info.st_mtime, epoch),
            )
        else:
            entries[parent] = LayerEntry(parent, EntryKind.DIR, mode=0o755, mtime=epoch)


def _is_archive(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _archive_entries(path: Path, dest: str, epoch: int) -> Iterator[LayerEntry]:
    """The members of a local tar archive, re-rooted at ``dest`` (ADD extracts archives)."""
    tar = tarfile.open(path, "r:*")  # noqa: SIM115 -- members are read lazily by the writer
    members = tar.getmembers()
    for member in members:
        parts = [p for p in member.name.split("/") if p not in ("", ".")]
        if not parts:
            continue
        if ".." in parts:
            raise BuildError(
                f"ADD {path.name}: archive entry {member.name!r} leaves the destination"
            )
        name = "/".join([dest, *parts]) if dest else "/".join(parts)
        common = {
            "mode": member.mode & 0o7777,
            "uid": member.uid,
            "gid": member.gid,
            "mtime": clamp(member.mtime, epoch),
        }
        if member.isdir():
            yield LayerEntry(name, EntryKind.DIR, **common)  # type: ignore[arg-type]
        elif member.issym():
            # a symlink's own mode means nothing on Linux; extracted, it reads 0777
            common["mode"] = 0o777
            yield LayerEntry(name, EntryKind.SYMLINK, linkname=member.linkname, **common)  # type: ignore[arg-type]
        elif member.islnk():
            link_parts = [p for p in member.linkname.split("/") if p not in ("", ".")]
            if ".." in link_parts:
                raise BuildError(f"ADD {path.name}: hard link {member.name!r} leaves the archive")
            linkname = "/".join([dest, *link_parts]) if dest else "/".join(link_parts)
            yield LayerEntry(name, EntryKind.HARDLINK, linkname=linkname, **common)  # type: ignore[arg-type]
        elif member.isreg():
            yield LayerEntry(
                name,
                EntryKind.FILE,
                size=member.size,
                reader=_member_reader(path, member.name),
                **common,  # type: ignore[arg-type]
            )
    tar.close()


def _member_reader(path: Path, name: str) -> Callable[[], _ClosingReader]:
    def open_member() -> _ClosingReader:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 -- closed with the returned stream
        handle = tar.extractfile(name)
        if handle is None:
            tar.close()
            raise BuildError(f"ADD {path.name}: {name} is not a regular file")
        return _ClosingReader(handle, tar)

    return open_member


class _ClosingReader:
    def __init__(self, handle: IO[bytes], tar: tarfile.TarFile) -> None:
        self._handle = handle
        self._tar = tar

    def read(self, size: int = -1) -> bytes:
        return self._handle.read(size)

    def __enter__(self) -> _ClosingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()
        self._tar.close()
