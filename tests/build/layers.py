"""Read what a build wrote: the layer tars of an image in an OCI layout directory."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Member:
    """One tar entry of a layer: type, mode, owner, link target and file bytes."""

    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    mode: int
    uid: int
    gid: int
    linkname: str = ""
    data: bytes = b""


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def manifest_of(layout: Path, tag: str) -> dict[str, Any]:
    """The manifest the layout's index names ``tag``."""
    index = json.loads((layout / "index.json").read_text())
    for descriptor in index["manifests"]:
        if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            manifest: dict[str, Any] = json.loads(_blob(layout, descriptor["digest"]).read_text())
            return manifest
    raise AssertionError(f"{layout}: no manifest tagged {tag!r} in {index}")


def config_of(layout: Path, tag: str) -> dict[str, Any]:
    """The image config of the manifest tagged ``tag``."""
    manifest = manifest_of(layout, tag)
    config: dict[str, Any] = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
    return config


def layer_members(layout: Path, tag: str, index: int) -> dict[str, Member]:
    """Every entry of layer ``index`` (negative counts from the top), by path."""
    manifest = manifest_of(layout, tag)
    digest = manifest["layers"][index]["digest"]
    found: dict[str, Member] = {}
    with tarfile.open(_blob(layout, digest), "r:gz") as tar:
        for info in tar:
            data = b""
            if info.isreg():
                stream = tar.extractfile(info)
                assert stream is not None
                with stream:
                    data = stream.read()
            kind = (
                "file"
                if info.isreg()
                else "dir"
                if info.isdir()
                else "symlink"
                if info.issym()
                else "hardlink"
                if info.islnk()
                else "other"
            )
            found[info.name.rstrip("/")] = Member(
                kind, info.mode & 0o7777, info.uid, info.gid, info.linkname, data
            )
    return found


def file_member(data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Member:
    """The :class:`Member` a regular file with these bytes and metadata should be."""
    return Member("file", mode, uid, gid, "", data)


def dir_member(mode: int = 0o755, uid: int = 0, gid: int = 0) -> Member:
    """The :class:`Member` a directory with this metadata should be."""
    return Member("dir", mode, uid, gid)
