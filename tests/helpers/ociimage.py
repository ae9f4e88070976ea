"""Write small, valid OCI image layouts for tests and benchmarks.

``write_oci_layout(directory, "v1", files={"hello.txt": b"hi"}, random_layer_size=1 << 20,
busybox=True)`` writes (or adds a tag to) an OCI image layout at ``directory`` and
returns the manifest digest. Layers are uncompressed tars with fixed owners and times,
so the same arguments always give the same digests — except the random layer, which is
seeded by ``seed`` and streamed to disk, so it may be far bigger than memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import random
import shutil
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"

BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = (
    "sh",
    "echo",
    "true",
    "false",
    "cat",
    "ls",
    "sleep",
    "env",
    "wget",
    "httpd",
    "id",
)
MTIME = 1_700_000_000


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class _RandomReader(io.RawIOBase):
    """``size`` pseudo-random bytes from ``seed``, produced as they are read."""

    def __init__(self, size: int, seed: int) -> None:
        self.remaining = size
        self.rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.remaining)
        buffer[:n] = self.rng.randbytes(n)
        self.remaining -= n
        return n


def _blob_dir(layout: Path) -> Path:
    directory = layout / "blobs" / "sha256"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _write_bytes_blob(layout: Path, data: bytes, media_type: str) -> Blob:
    digest = hashlib.sha256(data).hexdigest()
    (_blob_dir(layout) / digest).write_bytes(data)
    return Blob(f"sha256:{digest}", len(data), media_type)


def _tar_info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _write_layer(layout: Path, fill: Callable[[tarfile.TarFile], None]) -> Blob:
    temp = _blob_dir(layout) / f".layer-{uuid.uuid4().hex}"
    with tarfile.open(temp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        fill(tar)
    hasher = hashlib.sha256()
    with open(temp, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    digest = hasher.hexdigest()
    os.replace(temp, _blob_dir(layout) / digest)
    return Blob(f"sha256:{digest}", temp.parent.joinpath(digest).stat().st_size, OCI_LAYER)


def _files_layer(layout: Path, files: dict[str, bytes]) -> Blob:
    def fill(tar: tarfile.TarFile) -> None:
        directories: set[str] = set()
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in directories:
                    directories.add(parent)
                    tar.addfile(_tar_info(parent + "/", tarfile.DIRTYPE, mode=0o755))
            data = files[name]
            tar.addfile(_tar_info(name.strip("/"), size=len(data)), io.BytesIO(data))

    return _write_layer(layout, fill)


def _busybox_layer(layout: Path) -> Blob:
    def fill(tar: tarfile.TarFile) -> None:
        for directory in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
            tar.addfile(_tar_info(directory + "/", tarfile.DIRTYPE, mode=0o755))
        size = BUSYBOX.stat().st_size
        with open(BUSYBOX, "rb") as handle:
            tar.addfile(_tar_info("bin/busybox", size=size, mode=0o755), handle)
        for applet in BUSYBOX_APPLETS:
            link = _tar_info(f"bin/{applet}", tarfile.SYMTYPE, mode=0o777)
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        tar.addfile(_tar_info("etc/passwd", size=len(passwd)), io.BytesIO(passwd))

    return _write_layer(layout, fill)


def _random_layer(layout: Path, size: int, seed: int) -> Blob:
    def fill(tar: tarfile.TarFile) -> None:
        tar.addfile(
            _tar_info("random.bin", size=size), io.BufferedReader(_RandomReader(size, seed))
        )

    return _write_layer(layout, fill)


def write_oci_layout(
    directory: Path,
    tag: str,
    files: dict[str, bytes] | None = None,
    random_layer_size: int = 0,
    busybox: bool = False,
    *,
    seed: int = 0,
) -> str:
    """Write an image into the OCI layout at ``directory`` under ``tag``; return its digest.

    Layers, in order: the busybox root filesystem (``busybox=True``), ``files`` (path ->
    content), and a file ``random.bin`` of ``random_layer_size`` random bytes. An image
    without any of them gets a single layer with ``/hello.txt``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    layers: list[Blob] = []
    if busybox:
        if not BUSYBOX.exists():
            raise FileNotFoundError(f"{BUSYBOX} is missing: install busybox-static")
        layers.append(_busybox_layer(directory))
    if files:
        layers.append(_files_layer(directory, files))
    if random_layer_size:
        layers.append(_random_layer(directory, random_layer_size, seed))
    if not layers:
        layers.append(_files_layer(directory, {"hello.txt": f"hello from {tag}\n".encode()}))
    config = {
        "architecture": _arch(),
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"] if busybox else ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }
    config_blob = _write_bytes_blob(
        directory, json.dumps(config, sort_keys=True).encode(), OCI_CONFIG
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_blob = _write_bytes_blob(
        directory, json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST
    )
    index_path = directory / "index.json"
    index: dict[str, Any] = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    entries = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    entry = manifest_blob.descriptor()
    entry["annotations"] = {REF_NAME: tag}
    index["manifests"] = [*entries, entry]
    index_path.write_text(json.dumps(index, sort_keys=True))
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return manifest_blob.digest


def remove_layout(directory: Path) -> None:
    """Delete a layout written by :func:`write_oci_layout`."""
    shutil.rmtree(directory, ignore_errors=True)
