"""Unpacking well-formed layers: metadata, whiteouts, owners, compression, atomicity."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import os
import stat
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from runners.errors import DigestError, LayerError
from runners.oci.digest import Digest
from runners.runtime.compression import Compression, compression_of
from runners.runtime.unpack import (
    OPAQUE_XATTR,
    Donor,
    UnpackOptions,
    shift_capability,
    unpack_layer,
    write_members,
)
from tests.runtime.tars import MTIME, Entry, gzipped, layer_tar

pytestmark = pytest.mark.privileged

# CAP_NET_BIND_SERVICE (bit 10) permitted + effective, version 2
CAP_V2 = (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)


def _unpack(tmp_path: Path, data: bytes, options: UnpackOptions | None = None) -> Path:
    dest = tmp_path / "layers" / "one"
    result = unpack_layer(io.BytesIO(data), dest, options)
    assert result.path == dest
    return dest


def test_files_dirs_links_modes_and_mtimes_are_kept(tmp_path: Path) -> None:
    tar = layer_tar(
        Entry("bin", "dir", mode=0o750, mtime=MTIME - 100),
        Entry("bin/tool", data=b"tool", mode=0o4755),
        Entry("bin/alias", "symlink", link="tool"),
        Entry("bin/same", "hardlink", link="bin/tool"),
        Entry("tmp", "dir", mode=0o1777),
        Entry("deep/er/file", data=b"x", mode=0o600),
    )
    dest = _unpack(tmp_path, tar)

    tool = (dest / "bin/tool").stat()
    assert (dest / "bin/tool").read_bytes() == b"tool"
    assert stat.S_IMODE(tool.st_mode) == 0o4755
    assert tool.st_mtime == MTIME
    assert tool.st_nlink == 2
    assert (dest / "bin/same").stat().st_ino == tool.st_ino
    assert os.readlink(dest / "bin/alias") == "tool"
    assert stat.S_IMODE((dest / "bin").stat().st_mode) == 0o750
    # the directory's time is set after its children were written
    assert (dest / "bin").stat().st_mtime == MTIME - 100
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    # implicit parents are plain root-owned 0755 directories
    deep = (dest / "deep").stat()
    assert (stat.S_IMODE(deep.st_mode), deep.st_uid, deep.st_gid) == (0o755, 0, 0)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755


def test_owners_are_shifted(tmp_path: Path) -> None:
    tar = layer_tar(
        Entry("home", "dir"),
        Entry("home/app", "dir", uid=1000, gid=1000),
        Entry("home/app/f", data=b"x", uid=1000, gid=100, mode=0o2755),
        Entry("home/app/l", "symlink", link="f", uid=1000, gid=1000),
    )
    dest = _unpack(tmp_path, tar, UnpackOptions(uid_shift=200000, gid_shift=300000))
    assert (dest.stat().st_uid, dest.stat().st_gid) == (200000, 300000)
    app = (dest / "home/app").stat()
    assert (app.st_uid, app.st_gid) == (201000, 301000)
    f = (dest / "home/app/f").stat()
    assert (f.st_uid, f.st_gid) == (201000, 300100)
    # setgid survives the chown
    assert stat.S_IMODE(f.st_mode) == 0o2755
    link = (dest / "home/app/l").lstat()
    assert (link.st_uid, link.st_gid) == (201000, 301000)


def test_owner_outside_the_mapped_range_is_refused_when_shifting(tmp_path: Path) -> None:
    tar = layer_tar(Entry("f", data=b"x", uid=70000))
    with pytest.raises(LayerError, match=r"'f': owner 70000:0 is outside the 65536 ids"):
        _unpack(tmp_path, tar, UnpackOptions(uid_shift=100000, gid_shift=100000))
    # without a shift the same owner is fine
    dest = _unpack(tmp_path, tar)
    assert (dest / "f").stat().st_uid == 70000


def test_whiteout_becomes_an_overlay_whiteout(tmp_path: Path) -> None:
    dest = _unpack(tmp_path, layer_tar(Entry("etc", "dir"), Entry("etc/.wh.motd")))
    info = (dest / "etc/motd").lstat()
    assert stat.S_ISCHR(info.st_mode)
    assert info.st_rdev == os.makedev(0, 0)
    assert not (dest / "etc/.wh.motd").exists()


def test_opaque_marker_becomes_the_overlay_xattr(tmp_path: Path) -> None:
    dest = _unpack(tmp_path, layer_tar(Entry("var/cache/.wh..wh..opq"), Entry("var/cache/new")))
    assert os.getxattr(dest / "var/cache", OPAQUE_XATTR) == b"y"
    assert sorted(p.name for p in (dest / "var/cache").iterdir()) == ["new"]
    with pytest.raises(OSError, match="No data"):
        os.getxattr(dest / "var", OPAQUE_XATTR)


def test_whiteout_does_not_hide_the_same_layers_entry(tmp_path: Path) -> None:
    before = _unpack(tmp_path / "a", layer_tar(Entry("f", data=b"mine"), Entry(".wh.f")))
    after = _unpack(tmp_path / "b", layer_tar(Entry(".wh.f"), Entry("f", data=b"mine")))
    assert (before / "f").read_bytes() == b"mine"
    assert (after / "f").read_bytes() == b"mine"


def test_directory_recreated_after_its_whiteout_is_opaque(tmp_path: Path) -> None:
    dest = _unpack(tmp_path, layer_tar(Entry(".wh.cfg"), Entry("cfg/new", data=b"n")))
    assert (dest / "cfg/new").read_bytes() == b"n"
    assert os.getxattr(dest / "cfg", OPAQUE_XATTR) == b"y"


def test_aufs_bookkeeping_entries_are_ignored(tmp_path: Path) -> None:
    dest = _unpack(tmp_path, layer_tar(Entry(".wh..wh.plnk", "dir"), Entry("a", data=b"")))
    assert sorted(p.name for p in dest.iterdir()) == ["a"]


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    tar = layer_tar(
        Entry("x", data=b"first"),
        Entry("x", data=b"second"),
        Entry("d/inner", data=b"i"),
        Entry("d", "symlink", link="x"),
    )
    dest = _unpack(tmp_path, tar)
    assert (dest / "x").read_bytes() == b"second"
    assert os.readlink(dest / "d") == "x"


def test_capability_xattr_is_kept(tmp_path: Path) -> None:
    pax = {"SCHILY.xattr.security.capability": CAP_V2.decode("utf-8", "surrogateescape")}
    tar = layer_tar(Entry("ping", data=b"\x7fELF", mode=0o755, pax=pax))
    dest = _unpack(tmp_path, tar)
    assert os.getxattr(dest / "ping", "security.capability") == CAP_V2


def test_capability_xattr_is_rooted_at_the_shifted_uid(tmp_path: Path) -> None:
    pax = {"SCHILY.xattr.security.capability": CAP_V2.decode("utf-8", "surrogateescape")}
    tar = layer_tar(Entry("ping", data=b"\x7fELF", mode=0o755, pax=pax))
    dest = _unpack(tmp_path, tar, UnpackOptions(uid_shift=100000, gid_shift=100000))
    value = os.getxattr(dest / "ping", "security.capability")
    assert value == shift_capability(CAP_V2, 100000)
    assert int.from_bytes(value[:4], "little") == 0x03000001
    assert int.from_bytes(value[20:24], "little") == 100000


def test_other_xattrs_from_the_tar_are_not_applied(tmp_path: Path) -> None:
    # an attacker-supplied overlay attribute must never reach the layer directory
    pax = {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.note": "n"}
    dest = _unpack(tmp_path, layer_tar(Entry("d", "dir", pax=pax)))
    assert os.listxattr(dest / "d") == []


def test_gzip_and_plain_layers_unpack_alike_with_both_digests(tmp_path: Path) -> None:
    plain = layer_tar(Entry("a/b", data=b"hello" * 1000), Entry("c", "symlink", link="a/b"))
    packed = gzipped(plain)
    r1 = unpack_layer(io.BytesIO(plain), tmp_path / "plain")
    r2 = unpack_layer(io.BytesIO(packed), tmp_path / "gz")
    assert r1.diff_id == r2.diff_id == Digest("sha256", hashlib.sha256(plain).hexdigest())
    assert r1.blob_digest == r1.diff_id
    assert r2.blob_digest == Digest("sha256", hashlib.sha256(packed).hexdigest())
    assert (r2.blob_size, r2.size, r2.entries) == (len(packed), len(plain), 2)
    assert (tmp_path / "gz/a/b").read_bytes() == b"hello" * 1000


def test_declared_compression_is_used(tmp_path: Path) -> None:
    packed = gzipped(layer_tar(Entry("f", data=b"x")))
    assert compression_of("application/vnd.oci.image.layer.v1.tar+gzip") is Compression.GZIP
    with pytest.raises(LayerError, match="corrupt"):
        unpack_layer(
            io.BytesIO(packed), tmp_path / "l", UnpackOptions(compression=Compression.NONE)
        )
    assert list(tmp_path.iterdir()) == []


def test_zstd_layers_need_the_zstandard_module(tmp_path: Path) -> None:
    plain = layer_tar(Entry("f", data=b"zz"))
    if importlib.util.find_spec("zstandard") is None:
        frame = b"\x28\xb5\x2f\xfd" + bytes(16)
        with pytest.raises(LayerError, match="'zstandard' is not installed"):
            unpack_layer(io.BytesIO(frame), tmp_path / "l")
        assert list(tmp_path.iterdir()) == []
    else:
        zstandard: Any = importlib.import_module("zstandard")
        packed = zstandard.ZstdCompressor().compress(plain)
        result = unpack_layer(io.BytesIO(packed), tmp_path / "l")
        assert (tmp_path / "l/f").read_bytes() == b"zz"
        assert result.diff_id == Digest("sha256", hashlib.sha256(plain).hexdigest())


def test_truncated_gzip_leaves_nothing_behind(tmp_path: Path) -> None:
    packed = gzipped(layer_tar(Entry("f", data=os.urandom(200_000))))
    with pytest.raises(LayerError, match="corrupt"):
        unpack_layer(io.BytesIO(packed[: len(packed) // 2]), tmp_path / "l")
    assert list(tmp_path.iterdir()) == []


def test_unexpected_digest_discards_the_layer(tmp_path: Path) -> None:
    tar = layer_tar(Entry("f", data=b"x"))
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestError, match="neither matches"):
        unpack_layer(io.BytesIO(tar), tmp_path / "l", expect=wrong)
    assert list(tmp_path.iterdir()) == []
    unpack_layer(io.BytesIO(tar), tmp_path / "l", expect=Digest.of(tar))
    assert (tmp_path / "l/f").read_bytes() == b"x"


def test_concurrent_unpacks_into_one_destination_both_succeed(tmp_path: Path) -> None:
    tar = layer_tar(*[Entry(f"d{i}/f{j}", data=b"y" * 100) for i in range(5) for j in range(20)])
    errors: list[BaseException] = []

    def work() -> None:
        try:
            unpack_layer(io.BytesIO(tar), tmp_path / "l")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["l"]
    assert len(list((tmp_path / "l").rglob("f*"))) == 100


def _member(name: str, data: bytes, mode: int = 0o644, capability: bytes | None = None) -> Any:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    if capability is not None:
        info.pax_headers["SCHILY.xattr.security.capability"] = capability.decode(
            "utf-8", "surrogateescape"
        )
    return info, (lambda: io.BytesIO(data))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_write_members_links_only_what_the_donor_holds_unchanged(tmp_path: Path) -> None:
    same, other = b"same\n", b"other\n"
    donor_root = tmp_path / "donor"
    donor_root.mkdir()
    donor_members = [_member("d", b""), _member("d/same", same), _member("d/mode", same),
                     _member("d/bytes", other), _member("d/cap", same, capability=CAP_V2)]  # fmt: skip
    donor_members[0][0].type, donor_members[0][0].mode = tarfile.DIRTYPE, 0o755
    write_members(donor_members, donor_root)
    os.chmod(donor_root / "d" / "mode", 0o600)  # no longer what the new member asks for
    # a donor that reaches outside through a symlink is never followed
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "same").write_bytes(same)
    os.utime(outside / "same", (MTIME, MTIME))
    (donor_root / "via").symlink_to(outside)
    recorded = {name: _digest(same) for name in ("d/same", "d/mode", "d/cap", "via/same")}
    recorded["d/bytes"] = _digest(same)  # recorded wrongly: the bytes there differ
    donor = Donor(donor_root, recorded)

    new_root = tmp_path / "new"
    new_root.mkdir()
    directory = _member("d", b"")
    directory[0].type, directory[0].mode = tarfile.DIRTYPE, 0o755
    via = _member("via", b"")
    via[0].type, via[0].mode = tarfile.DIRTYPE, 0o755
    members = [directory, _member("d/same", same), _member("d/mode", same),
               _member("d/bytes", same), _member("d/cap", same, capability=CAP_V2),
               via, _member("via/same", same)]  # fmt: skip
    digests = {name: _digest(same) for name in ("d/same", "d/mode", "d/bytes", "d/cap", "via/same")}
    write_members(members, new_root, digests=digests, donor=donor)

    def inode(root: Path, name: str) -> int:
        return (root / name).lstat().st_ino

    assert inode(new_root, "d/same") == inode(donor_root, "d/same")
    for name in ("d/mode", "d/bytes", "d/cap"):
        assert inode(new_root, name) != inode(donor_root, name), name
    assert inode(new_root, "via/same") != inode(outside, "same")
    for name in ("d/same", "d/mode", "d/bytes", "d/cap", "via/same"):
        assert (new_root / name).read_bytes() == same, name
        assert stat.S_IMODE((new_root / name).stat().st_mode) == 0o644, name
    assert os.getxattr(new_root / "d" / "cap", "security.capability") == CAP_V2


def test_write_members_without_a_donor_writes_everything(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    root.mkdir()
    members = [_member("a", b"a\n")]
    # a donor directory that is gone (pruned) lends nothing and fails nothing
    gone = Donor(tmp_path / "pruned", {"a": _digest(b"a\n")})
    assert write_members(members, root, digests={"a": _digest(b"a\n")}, donor=gone) == 1
    assert (root / "a").read_bytes() == b"a\n"
