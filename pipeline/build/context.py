"""Where COPY and ADD read from: the build context (after ``.dockerignore``) or a rootfs.

A :class:`SourceTree` indexes a directory once (``lstat`` only, nothing read) and
selects what a source word names: a path, a glob, or a directory with everything
below it. :func:`content_hash` hashes a selection by names, types, modes, link targets
and file bytes (streamed, never whole in memory) — not mtimes, so a fresh checkout of
the same commit hits the cache.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.build.dockerignore import IgnoreRules
from pipeline.build.errors import BuildError
from runners.oci.digest import CHUNK

DOCKERIGNORE = ".dockerignore"


@dataclass(frozen=True)
class Selected:
    """One path a source word selected: its place in the tree and where it lands."""

    rel: str  # relative to the tree root
    dest_rel: str  # relative to the copy's destination ("" is the destination itself)
    info: os.stat_result


class SourceTree:
    """A directory COPY can read from, indexed lazily; symlinks are never followed."""

    def __init__(self, root: Path, ignore: IgnoreRules | None = None) -> None:
        self.root = root
        self.ignore = ignore
        self._index: dict[str, os.stat_result] | None = None

    @classmethod
    def context(cls, root: Path) -> SourceTree:
        """The build context at ``root``, filtered by its ``.dockerignore``."""
        if not root.is_dir():
            raise BuildError(f"build context {root}: not a directory")
        ignore_file = root / DOCKERIGNORE
        rules = IgnoreRules.parse(ignore_file.read_text()) if ignore_file.is_file() else None
        return cls(root, rules)

    @property
    def index(self) -> dict[str, os.stat_result]:
        if self._index is None:
            self._index = dict(self._walk("", self.root))
        return self._index

    def _walk(self, rel: str, directory: Path) -> Iterator[tuple[str, os.stat_result]]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise BuildError(f"build context {directory}: cannot list: {exc.strerror}") from exc
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            info = entry.stat(follow_symlinks=False)
            ignored = self.ignore is not None and self.ignore.ignored(name)
            if not ignored:
                yield name, info
            if stat.S_ISDIR(info.st_mode) and (
                not ignored or (self.ignore is not None and self.ignore.may_reinclude(name))
            ):
                yield from self._walk(name, Path(entry.path))

    def lstat(self, rel: str) -> os.stat_result | None:
        if self.ignore is not None:
            return self.index.get(rel)
        parts = rel.split("/") if rel else []
        for i in range(1, len(parts)):
            parent = self.root.joinpath(*parts[:i])
            if parent.is_symlink():
                raise BuildError(
                    f"{rel!r} goes through the symlink {'/'.join(parts[:i])!r}; COPY never"
                    " follows links in the build context"
                )
        try:
            return os.lstat(self.root / rel) if rel else os.lstat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def select(self, word: str) -> list[Selected]:
        """Everything ``word`` names; raise :class:`BuildError` when it names nothing."""
        pattern = _normal(word)
        if any(c in pattern for c in "*?["):
            roots = [rel for rel in self._candidates(pattern) if fnmatch.fnmatchcase(rel, pattern)]
            if not roots:
                raise BuildError(f"no files match {word!r}")
            found: list[Selected] = []
            for rel in sorted(roots):
                found.extend(self._expand(rel, self.lstat(rel)))
            return found
        info = self.lstat(pattern) if pattern else os.lstat(self.root)
        if info is None:
            raise BuildError(f"{word!r} not found")
        return list(self._expand(pattern, info))

    def _candidates(self, pattern: str) -> Iterable[str]:
        depth = pattern.count("/")
        if self.ignore is not None:
            return [rel for rel in self.index if rel.count("/") == depth]
        parent = pattern.rsplit("/", 1)[0] if "/" in pattern else ""
        if any(c in parent for c in "*?["):
            return [rel for rel in self.index if rel.count("/") == depth]
        directory = self.root / parent
        if not directory.is_dir():
            return []
        return [f"{parent}/{n}" if parent else n for n in os.listdir(directory)]

    def _expand(self, rel: str, info: os.stat_result | None) -> Iterator[Selected]:
        """``rel`` itself (``dest_rel`` ""), and for a directory its contents below it."""
        assert info is not None
        yield Selected(rel, "", info)
        if not stat.S_ISDIR(info.st_mode):
            return
        base = ""
        prefix = f"{rel}/" if rel else ""
        if self.ignore is not None:
            for child, child_info in self.index.items():
                if child.startswith(prefix) and child != rel:
                    tail = child[len(prefix) :]
                    yield Selected(child, f"{base}/{tail}" if base else tail, child_info)
            return
        for child, child_info in self._walk(rel, self.root / rel if rel else self.root):
            tail = child[len(prefix) :]
            yield Selected(child, f"{base}/{tail}" if base else tail, child_info)

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root


def _normal(word: str) -> str:
    return "/".join(p for p in word.split("/") if p not in ("", "."))


def source_identities(
    tree: SourceTree, selections: Iterable[tuple[str, list[Selected]]]
) -> dict[Path, tuple[int, int, int]]:
    """Size, mtime and inode of each regular file a COPY selected, as seen then.

    Whatever is written from those files later (the layer's blob, its directory) must
    find them so, or the build fails rather than make the two differ.
    """
    return {
        tree.path(item.rel): (item.info.st_size, item.info.st_mtime_ns, item.info.st_ino)
        for _, selected in selections
        for item in selected
        if stat.S_ISREG(item.info.st_mode)
    }


def content_hash(
    tree: SourceTree,
    selections: Iterable[tuple[str, list[Selected]]],
    file_digests: dict[Path, bytes] | None = None,
) -> str:
    """A hash of what a COPY reads: names, types, modes, link targets and bytes.

    ``file_digests``, when given, receives the sha256 of each regular file read.
    """
    hasher = hashlib.sha256()
    for word, selected in selections:
        hasher.update(f"src {word}\n".encode())
        for item in selected:
            mode = item.info.st_mode
            hasher.update(
                f"{item.dest_rel}\0{stat.S_IFMT(mode)}\0{stat.S_IMODE(mode):o}\0".encode()
            )
            if stat.S_ISLNK(mode):
                hasher.update(os.readlink(tree.path(item.rel)).encode() + b"\0")
            elif stat.S_ISREG(mode):
                hasher.update(f"{item.info.st_size}\0".encode())
                path = tree.path(item.rel)
                digest = _file_digest(path)
                hasher.update(digest)
                if file_digests is not None:
                    file_digests[path] = digest
    return hasher.hexdigest()


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.digest()
