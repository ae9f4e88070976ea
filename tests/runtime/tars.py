"""Hand-crafted layer tars for unpacking tests, including malicious ones."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MTIME = 1_700_000_000


@dataclass
class Entry:
    """One tar member; ``kind`` is file, dir, symlink, hardlink, chr, blk or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    device: tuple[int, int] = (0, 0)
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def layer_tar(*entries: Entry) -> bytes:
    """An uncompressed PAX tar of ``entries``, written exactly as given (no sanitising)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TYPES[entry.kind]
            info.mode = entry.mode if entry.mode is not None else _default_mode(entry.kind)
            info.uid, info.gid = entry.uid, entry.gid
            info.mtime = entry.mtime
            info.linkname = entry.link
            info.devmajor, info.devminor = entry.device
            info.pax_headers = dict(entry.pax)
            if entry.kind == "file":
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _default_mode(kind: str) -> int:
    return 0o755 if kind == "dir" else 0o644


def busybox_layer(busybox: Path, applets: tuple[str, ...]) -> bytes:
    """A one-layer root filesystem: ``bin/busybox`` and symlinks to it for ``applets``."""
    entries = [
        Entry("bin", "dir"),
        Entry("bin/busybox", data=busybox.read_bytes(), mode=0o755),
        Entry("etc", "dir"),
        Entry(
            "etc/passwd",
            data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        ),
        Entry("tmp", "dir", mode=0o1777),
    ]
    entries += [Entry(f"bin/{name}", "symlink", link="busybox") for name in applets]
    return layer_tar(*entries)
