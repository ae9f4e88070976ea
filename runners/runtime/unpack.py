"""Safe layer unpacking: an OCI layer tar becomes a directory overlayfs can stack.

The tar is read as a stream (never whole in memory) and written into a staging
directory next to the destination, which is renamed into place only when every entry
was accepted, so a half-unpacked layer is never visible. Entries are refused with
:class:`LayerError` when they could write outside the layer:

- absolute names and names with ``..``;
- entries below a symlink (every write walks its parents with ``O_NOFOLLOW``);
- hard links whose target is outside the layer or missing;
- symlinks whose target, followed on the host, climbs above the layer root
  (absolute targets are fine: in the container they start at its root);
- character and block devices and FIFOs, unless ``allow_devices`` is set.

OCI whiteouts become overlayfs whiteouts: ``.wh.NAME`` a 0:0 character device, and
``.wh..wh..opq`` the ``trusted.overlay.opaque=y`` attribute on its directory. Owners are
shifted by ``uid_shift``/``gid_shift`` for user-namespaced containers; modes (setuid
included), mtimes, hard links and ``security.capability`` attributes are kept.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runners.errors import DigestError, LayerError
from runners.oci.digest import Digest
from runners.runtime import confined
from runners.runtime.compression import CHUNK, Compression, LayerStream, Readable

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
CAPABILITY_XATTR = "security.capability"
_PAX_CAPABILITY = "SCHILY.xattr." + CAPABILITY_XATTR

# Ids a user namespace maps by default: container ids 0..65535.
DEFAULT_ID_RANGE = 65536

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# struct vfs_ns_cap_data / vfs_cap_data revisions (linux/capability.h)
_CAP_REVISION_MASK = 0xFF000000
_CAP_REVISION_2 = 0x02000000
_CAP_REVISION_3 = 0x03000000
_CAP_V2_SIZE = 20
_CAP_V3_SIZE = 24


@dataclass(frozen=True)
class UnpackOptions:
    """How a layer is unpacked: owner shift for user namespaces, allowed entry types."""

    uid_shift: int = 0
    gid_shift: int = 0
    # With a shift, owners must fall inside the ids the container's user namespace maps.
    id_range: int = DEFAULT_ID_RANGE
    allow_devices: bool = False
    compression: Compression = Compression.AUTO

    @property
    def shifted(self) -> bool:
        return self.uid_shift != 0 or self.gid_shift != 0


Content = Callable[[], IO[bytes] | None]
"""Opens a regular member's bytes (exactly ``member.size`` of them are read)."""


@dataclass(frozen=True)
class UnpackResult:
    """Where a layer was unpacked and what its bytes hashed to."""

    path: Path
    diff_id: Digest
    blob_digest: Digest
    blob_size: int
    size: int
    entries: int


def unpack_layer(
    blob: Readable,
    dest: Path,
    options: UnpackOptions | None = None,
    *,
    expect: Digest | None = None,
) -> UnpackResult:
    """Unpack the layer ``blob`` into ``dest`` atomically.

    ``expect``, when given, must equal the layer's diff id or its blob digest, or the
    staged copy is discarded and :class:`DigestError` raised. When another process
    renamed the same layer into ``dest`` first, its copy is kept and ours discarded.
    """
    options = options or UnpackOptions()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        with LayerStream(blob, options.compression) as stream:
            entries = _Extractor(staging, options).extract(stream.tar)
            stream.finish()
        if expect is not None and expect not in (stream.diff_id, stream.blob_digest):
            raise DigestError(
                f"layer {expect}: unpacked content has diff id {stream.diff_id} and blob digest"
                f" {stream.blob_digest}, neither matches; the blob is corrupt or mislabelled"
            )
        _publish(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return UnpackResult(
        path=dest,
        diff_id=stream.diff_id,
        blob_digest=stream.blob_digest,
        blob_size=stream.blob_size,
        size=stream.size,
        entries=entries,
    )


@dataclass(frozen=True)
class Donor:
    """An earlier layer directory whose files :func:`write_members` may hard-link.

    ``files`` maps a member name to the content digest its file had when written there.
    A file is linked only when the new member has the same digest and the donor's file
    still has exactly the new member's type, owner, mode, size and mtime (and no
    capability attribute); layer directories are never written once filed, so the two
    names then stand for one identical file. Anything else is written as usual.
    """

    root: Path
    files: Mapping[str, str]


def write_members(
    members: Iterable[tuple[tarfile.TarInfo, Content | None]],
    root: Path,
    options: UnpackOptions | None = None,
    *,
    digests: Mapping[str, str] | None = None,
    donor: Donor | None = None,
) -> int:
    """Write a layer's members, given directly rather than as a tar, into empty ``root``.

    For a layer whose blob is written from the same members (a build's COPY): the
    directory comes out as :func:`unpack_layer` of that blob would make it, with the
    same checks, but without compressing, parsing and reading back the tar. ``root`` is
    a staging directory: the caller renames it into place once whole (and removes it
    when this raises). ``digests`` (member name -> content digest) with a ``donor``
    lets unchanged files be hard-linked from an earlier version of the layer — a
    rebuilt COPY of 2,000 files where one changed links 1,999 (a link costs a sixth of
    writing a file on this project's machines). Returns the number of members.
    """
    extractor = _Extractor(root, options or UnpackOptions())
    if donor is not None and digests:
        extractor.donor, extractor.digests = donor, digests
    return extractor.extract_members(members)


def _publish(staging: Path, dest: Path) -> None:
    try:
        os.rename(staging, dest)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not dest.is_dir():
            raise
        # Someone else published the same content first; theirs is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)


def shift_capability(value: bytes, rootid: int) -> bytes:
    """A ``security.capability`` value that applies inside a user namespace rooted at ``rootid``.

    Version 2 values only apply where host root is root; version 3 carries the owning
    root id, so a shifted container's root (host uid ``rootid``) gets the capabilities.
    """
    if rootid == 0 or len(value) < 4:
        return value
    magic = int.from_bytes(value[:4], "little")
    revision = magic & _CAP_REVISION_MASK
    if revision == _CAP_REVISION_2 and len(value) == _CAP_V2_SIZE:
        header = (_CAP_REVISION_3 | (magic & ~_CAP_REVISION_MASK)).to_bytes(4, "little")
        return header + value[4:] + rootid.to_bytes(4, "little")
    if revision == _CAP_REVISION_3 and len(value) == _CAP_V3_SIZE:
        inner = int.from_bytes(value[20:24], "little")
        return value[:20] + (inner + rootid).to_bytes(4, "little")
    return value


class _Extractor:
    """Writes one tar stream's entries below ``root`` (see the module docstring)."""

    def __init__(self, root: Path, options: UnpackOptions) -> None:
        self.root = root
        self.options = options
        self.root_uid = options.uid_shift
        self.root_gid = options.gid_shift
        self.dir_times: list[tuple[tuple[str, ...], int]] = []
        self.symlinks: list[tuple[tuple[str, ...], str]] = []
        self.whiteouts: set[tuple[str, ...]] = set()
        self.root_seen = False
        self.entries = 0
        self.root_fd = -1
        self.donor: Donor | None = None
        self.digests: Mapping[str, str] = {}

    def extract(self, stream: IO[bytes]) -> int:
        def members() -> Iterable[tuple[tarfile.TarInfo, Content | None]]:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    yield member, (lambda m=member: tar.extractfile(m))  # type: ignore[misc]

        try:
            return self.extract_members(members())
        except tarfile.TarError as exc:
            raise LayerError(f"layer tar is corrupt after {self.entries} entries: {exc}") from exc

    def extract_members(self, members: Iterable[tuple[tarfile.TarInfo, Content | None]]) -> int:
        self.root_fd = os.open(self.root, _DIR_FLAGS)
        try:
            for member, content in members:
                self.entries += 1
                self._entry(member, content)
            self._check_symlinks()
            if not self.root_seen:
                os.fchown(self.root_fd, self.root_uid, self.root_gid)
                os.fchmod(self.root_fd, 0o755)
            self._apply_dir_times()
        finally:
            os.close(self.root_fd)
        return self.entries

    # -- one entry -------------------------------------------------------------------

    def _entry(self, member: tarfile.TarInfo, content: Content | None) -> None:
        try:
            self._write_entry(member, content)
        except OSError as exc:
            # a full disk or a read-only file system, not a bad layer; still name the entry
            raise LayerError(f"layer entry {member.name!r}: could not write it: {exc}") from exc

    def _write_entry(self, member: tarfile.TarInfo, content: Content | None) -> None:
        name = member.name
        parts = confined.member_parts(name)
        if not parts:
            self._root_entry(member)
            return
        if parts[-1].startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, name)
            return
        uid, gid = self._owner(member)
        parent = self._parent(parts[:-1], name)
        try:
            if member.isdir():
                self._directory(parent, parts, member, uid, gid)
            elif member.isreg():
                self._file(parent, parts, content, member, uid, gid)
            elif member.issym():
                self._symlink(parent, parts, member, uid, gid)
            elif member.islnk():
                self._hardlink(parent, parts, member)
            elif member.ischr() or member.isblk() or member.isfifo():
                self._device(parent, parts, member, uid, gid)
            else:
                raise LayerError(
                    f"layer entry {name!r}: unsupported tar entry type {member.type!r}"
                )
        finally:
            os.close(parent)

    def _owner(self, member: tarfile.TarInfo) -> tuple[int, int]:
        uid, gid = member.uid, member.gid
        if self.options.shifted and (uid >= self.options.id_range or gid >= self.options.id_range):
            raise LayerError(
                f"layer entry {member.name!r}: owner {uid}:{gid} is outside the"
                f" {self.options.id_range} ids mapped into user-namespaced containers"
            )
        return uid + self.options.uid_shift, gid + self.options.gid_shift

    def _parent(self, parts: tuple[str, ...], name: str) -> int:
        for depth in range(1, len(parts) + 1):
            if parts[:depth] in self.whiteouts:
                self._whiteout_to_directory(parts[:depth], name)
        return confined.make_dirs(
            self.root_fd, parts, entry=name, uid=self.root_uid, gid=self.root_gid
        )

    def _whiteout_to_directory(self, parts: tuple[str, ...], name: str) -> None:
        # A later entry of this layer needs a directory where it whited out a lower one:
        # the lower directory stays hidden, so the new one is opaque.
        parent = confined.make_dirs(
            self.root_fd, parts[:-1], entry=name, uid=self.root_uid, gid=self.root_gid
        )
        try:
            os.unlink(parts[-1], dir_fd=parent)
            self.whiteouts.discard(parts)
            fd = confined.make_dirs(
                parent, parts[-1:], entry=name, uid=self.root_uid, gid=self.root_gid
            )
            try:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def _make_room(self, parent: int, parts: tuple[str, ...], *, keep_dir: bool) -> bool:
        """Remove what is at ``parts`` (a later tar entry wins); True when a dir was kept."""
        self.whiteouts.discard(parts)
        try:
            info = os.lstat(parts[-1], dir_fd=parent)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(info.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(parts[-1], dir_fd=parent)
        else:
            os.unlink(parts[-1], dir_fd=parent)
        return False

    # -- entry types -----------------------------------------------------------------

    def _root_entry(self, member: tarfile.TarInfo) -> None:
        if not member.isdir():
            raise LayerError(f"layer entry {member.name!r}: the layer root must be a directory")
        uid, gid = self._owner(member)
        os.fchown(self.root_fd, uid, gid)
        os.fchmod(self.root_fd, member.mode & 0o7777)
        self.root_seen = True
        self.dir_times.append(((), _mtime_ns(member)))

    def _directory(
        self, parent: int, parts: tuple[str, ...], member: tarfile.TarInfo, uid: int, gid: int
    ) -> None:
        was_whiteout = parts in self.whiteouts
        if not self._make_room(parent, parts, keep_dir=True):
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, member.mode & 0o7777)
            if was_whiteout:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self.dir_times.append((parts, _mtime_ns(member)))

    def _file(
        self,
        parent: int,
        parts: tuple[str, ...],
        content: Content | None,
        member: tarfile.TarInfo,
        uid: int,
        gid: int,
    ) -> None:
        self._make_room(parent, parts, keep_dir=False)
        base = parts[-1]
        if self.donor is not None and self._link_from_donor(parent, parts, member, uid, gid):
            return
        source = content() if content is not None else None
        fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            if source is not None:
                with source:
                    _copy_exactly(source, fd, member.size, member.name)
            # chown clears setuid bits and file capabilities: owner first, then the rest.
            os.fchown(fd, uid, gid)
            os.fchmod(fd, member.mode & 0o7777)
            capability = member.pax_headers.get(_PAX_CAPABILITY)
            if capability is not None:
                raw = capability.encode("utf-8", "surrogateescape")
                os.setxattr(fd, CAPABILITY_XATTR, shift_capability(raw, self.options.uid_shift))
            mtime = _mtime_ns(member)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _link_from_donor(
        self, parent: int, parts: tuple[str, ...], member: tarfile.TarInfo, uid: int, gid: int
    ) -> bool:
        """Hard-link the donor's identical file in place of writing ``member``."""
        assert self.donor is not None
        name = "/".join(parts)
        digest = self.digests.get(name)
        if digest is None or self.donor.files.get(name) != digest:
            return False
        if _PAX_CAPABILITY in member.pax_headers:
            return False
        directory = -1
        try:
            # walked like every write here: no symlink on the way is followed
            directory = os.open(self.donor.root, _DIR_FLAGS)
            for part in parts[:-1]:
                inner = os.open(part, _DIR_FLAGS, dir_fd=directory)
                os.close(directory)
                directory = inner
            info = os.stat(parts[-1], dir_fd=directory, follow_symlinks=False)
            if (
                not stat.S_ISREG(info.st_mode)
                or stat.S_IMODE(info.st_mode) != member.mode & 0o7777
                or (info.st_uid, info.st_gid) != (uid, gid)
                or info.st_size != member.size
                or info.st_mtime_ns != _mtime_ns(member)
                or self._has_capability(directory, parts[-1])
            ):
                return False
            os.link(
                parts[-1],
                parts[-1],
                src_dir_fd=directory,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        except OSError:
            return False  # pruned meanwhile, too many links, another file system: write it
        finally:
            if directory >= 0:
                os.close(directory)
        return True

    @staticmethod
    def _has_capability(directory: int, name: str) -> bool:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory
        )
        try:
            return CAPABILITY_XATTR in os.listxattr(fd)
        finally:
            os.close(fd)

    def _symlink(
        self, parent: int, parts: tuple[str, ...], member: tarfile.TarInfo, uid: int, gid: int
    ) -> None:
        if not member.linkname:
            raise LayerError(f"layer entry {member.name!r}: symlink with an empty target")
        self._make_room(parent, parts, keep_dir=False)
        os.symlink(member.linkname, parts[-1], dir_fd=parent)
        os.chown(parts[-1], uid, gid, dir_fd=parent, follow_symlinks=False)
        mtime = _mtime_ns(member)
        os.utime(parts[-1], ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        self.symlinks.append((parts, member.linkname))

    def _hardlink(self, parent: int, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        label = f"layer entry {member.name!r}: hard link to {member.linkname!r}"
        try:
            target = confined.member_parts(member.linkname)
        except LayerError as exc:
            raise LayerError(f"{label} refused: its target is outside the layer") from exc
        if not target or target == parts:
            raise LayerError(f"{label} refused: it links to the layer root or to itself")
        try:
            target_parent = confined.open_dir(self.root_fd, target[:-1], entry=member.name)
        except FileNotFoundError as exc:
            raise LayerError(f"{label}: the target is not an earlier entry of the layer") from exc
        try:
            try:
                info = os.lstat(target[-1], dir_fd=target_parent)
            except FileNotFoundError as exc:
                raise LayerError(
                    f"{label}: the target is not an earlier entry of the layer"
                ) from exc
            if stat.S_ISDIR(info.st_mode):
                raise LayerError(f"{label} refused: the target is a directory")
            self._make_room(parent, parts, keep_dir=False)
            os.link(
                target[-1],
                parts[-1],
                src_dir_fd=target_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
            if stat.S_ISLNK(info.st_mode):
                # the same link text may climb out from its new, shallower place
                self.symlinks.append((parts, os.readlink(target[-1], dir_fd=target_parent)))
        finally:
            os.close(target_parent)

    def _device(
        self, parent: int, parts: tuple[str, ...], member: tarfile.TarInfo, uid: int, gid: int
    ) -> None:
        base = parts[-1]
        kind = "FIFO" if member.isfifo() else "device node"
        if not self.options.allow_devices:
            raise LayerError(
                f"layer entry {member.name!r}: {kind} refused (device nodes and FIFOs are not"
                " allowed in layers unless unpacked with allow_devices=True)"
            )
        self._make_room(parent, parts, keep_dir=False)
        kind_bits = stat.S_IFIFO if member.isfifo() else stat.S_IFCHR
        if member.isblk():
            kind_bits = stat.S_IFBLK
        device = os.makedev(member.devmajor, member.devminor)
        os.mknod(base, kind_bits | 0o600, device, dir_fd=parent)
        os.chown(base, uid, gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(base, member.mode & 0o7777, dir_fd=parent)
        mtime = _mtime_ns(member)
        os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def _whiteout(self, parts: tuple[str, ...], name: str) -> None:
        base = parts[-1]
        parent = self._parent(parts[:-1], name)
        try:
            if base == OPAQUE_WHITEOUT:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
                return
            if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                return  # aufs bookkeeping (.wh..wh.plnk and friends): nothing to hide
            hidden = base[len(WHITEOUT_PREFIX) :]
            if hidden in ("", ".", ".."):
                raise LayerError(f"layer entry {name!r}: a whiteout must name an entry")
            try:
                os.lstat(hidden, dir_fd=parent)
            except FileNotFoundError:
                pass
            else:
                return  # a whiteout hides lower layers only; this layer's entry stays
            os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
            self.whiteouts.add((*parts[:-1], hidden))
        finally:
            os.close(parent)

    # -- after the last entry --------------------------------------------------------

    def _check_symlinks(self) -> None:
        for parts, target in self.symlinks:
            info = confined.lstat_at(self.root_fd, parts)
            if info is None or not stat.S_ISLNK(info.st_mode):
                continue  # replaced by a later entry
            if confined.readlink_at(self.root_fd, parts) != target:
                continue
            reason = confined.escapes(self.root_fd, parts, target)
            if reason is not None:
                raise LayerError(
                    f"layer entry {confined.display(parts)!r}: symlink refused: {reason}"
                )

    def _apply_dir_times(self) -> None:
        # deepest first: setting a child's time does not touch its parent's
        for parts, mtime in sorted(self.dir_times, key=lambda item: -len(item[0])):
            try:
                fd = confined.open_dir(self.root_fd, parts, entry=confined.display(parts))
            except (FileNotFoundError, LayerError):
                continue  # replaced by a later entry
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)


def _copy_exactly(source: IO[bytes], fd: int, size: int, name: str) -> None:
    """``size`` bytes of ``source`` into ``fd``; in the kernel when it is a real file."""
    try:
        source_fd = source.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        source_fd = -1
    left = size
    if source_fd >= 0:
        while left > 0 and (copied := os.copy_file_range(source_fd, fd, min(left, 1 << 30))):
            left -= copied
    else:
        with open(fd, "wb", closefd=False) as out:
            while left > 0 and (chunk := source.read(min(left, CHUNK))):
                out.write(chunk)
                left -= len(chunk)
    if left:
        raise LayerError(f"layer entry {name!r}: {left} of its {size} bytes are missing")


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)
