"""The build step behind a protocol: an exported commit in, an image digest out.

:class:`ImageBuilder` is what the build queue calls. Two implementations:

- :class:`~pipeline.queue.dockerfile.DockerfileImageBuilder` — the app's Dockerfile
  through :mod:`pipeline.build` (the one ``berth serve`` uses);
- :class:`TreeImageBuilder` — packs the build context into one deterministic layer
  (sorted entries, mtimes clamped to the commit time, root owners) and pushes it with
  the registry client. It runs no commands, so it needs no privileges: a real, small
  builder for repositories that ship static content, and for tests of the queue.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from pipeline.appspec import AppSpec
from pipeline.errors import BerthError
from runners.oci import mediatypes
from runners.oci.client import RegistryClient
from runners.oci.digest import Digest
from runners.oci.layout import OCILayout
from runners.oci.manifest import Descriptor, build_manifest, canonical_json
from runners.oci.reference import Reference


class BuildFailed(BerthError):
    """The image could not be built from the commit; the message says why and where."""


class BuildCancelled(BerthError):
    """The build was cancelled while it ran."""


@dataclass(frozen=True)
class BuildRequest:
    """Everything one image build needs."""

    context: Path
    """The exported tree of the commit (the repository root)."""
    spec: AppSpec
    """The commit's own berth.yml."""
    source_date_epoch: int
    """The commit time: every timestamp in the image is clamped to it."""
    ref: str
    """Where to push, e.g. ``127.0.0.1:8420/berth/demo:<commit>``."""
    revision: str
    """The commit id (OCI annotation ``org.opencontainers.image.revision``)."""
    source: str = ""
    """The repository URL (annotation ``org.opencontainers.image.source``)."""
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set when the build should stop as soon as it can."""


class ImageBuilder(Protocol):
    """Builds and pushes the image of one commit."""

    def build(self, request: BuildRequest, log: BinaryIO) -> str:
        """Build, push to ``request.ref`` and return the manifest digest (``sha256:...``).

        Progress and command output go to ``log``; failures raise :class:`BuildFailed`
        (or any :class:`BerthError`) with a message a person can act on.
        """
        ...


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def within(root: Path, relative: str, what: str) -> Path:
    """``root/relative``, refusing paths (or symlinks) that lead outside ``root``."""
    path = (root / relative).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise BuildFailed(f"berth.yml: build/{what}: {relative!r} points outside the repository")
    return path


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(archive name, path) of every entry below ``root``, sorted, parents first."""
    names: list[str] = []
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (current == str(root) and d == ".git")]
        rel = os.path.relpath(current, root)
        for name in [*dirs, *files]:
            names.append(name if rel == "." else f"{rel}/{name}")
    for name in sorted(names):
        yield name, root / name


class TreeImageBuilder:
    """One layer holding the build context at ``/app``; see the module docstring."""

    def __init__(self, client: RegistryClient, *, workdir: Path, prefix: str = "app") -> None:
        self._client = client
        self._workdir = workdir
        self._prefix = prefix.strip("/")

    def build(self, request: BuildRequest, log: BinaryIO) -> str:
        context = within(request.context, request.spec.build.context, "context")
        if not context.is_dir():
            raise BuildFailed(
                f"berth.yml: build/context: {request.spec.build.context!r} is not a directory "
                f"in commit {request.revision[:12]}"
            )
        self._workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._workdir, prefix="tree-") as temp:
            layout = OCILayout.create(Path(temp) / "oci")
            layer, diff_id, count = self._layer(context, layout, request)
            log.write(f"packed {count} entries into one layer {layer.digest}\n".encode())
            config = self._config(request, diff_id)
            config_digest = layout.write_blob(config)
            manifest = build_manifest(
                Descriptor(mediatypes.OCI_CONFIG, config_digest, len(config)),
                [layer],
                annotations={
                    "org.opencontainers.image.revision": request.revision,
                    "org.opencontainers.image.source": request.source,
                    "org.opencontainers.image.created": _iso(request.source_date_epoch),
                },
            )
            layout.write_blob(manifest.raw)
            layout.add_manifest(manifest.descriptor, "build")
            reference = Reference.parse(request.ref)
            if request.cancel.is_set():
                raise BuildCancelled("cancelled before the push")
            result = self._client.push_image(layout, reference, tag="build")
            log.write(f"pushed {reference} as {result.digest}\n".encode())
            return str(result.digest)

    def _layer(
        self, context: Path, layout: OCILayout, request: BuildRequest
    ) -> tuple[Descriptor, Digest, int]:
        epoch = request.source_date_epoch
        path = layout.root / "layer.tar"
        count = 0
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info(self._prefix + "/", tarfile.DIRTYPE, 0o755, epoch))
            for name, entry in _walk(context):
                if request.cancel.is_set():
                    raise BuildCancelled("cancelled while packing the layer")
                info = self._entry(f"{self._prefix}/{name}", entry, epoch)
                if info.isreg():
                    with entry.open("rb") as stream:
                        tar.addfile(info, stream)
                else:
                    tar.addfile(info)
                count += 1
        hasher = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                hasher.update(chunk)
        digest = Digest.parse("sha256:" + hasher.hexdigest())
        size = path.stat().st_size
        path.replace(layout.blob_path(digest))
        return Descriptor(mediatypes.OCI_LAYER, digest, size), digest, count

    @staticmethod
    def _entry(name: str, path: Path, epoch: int) -> tarfile.TarInfo:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            info = _info(name, tarfile.SYMTYPE, 0o777, epoch)
            info.linkname = os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            info = _info(name + "/", tarfile.DIRTYPE, 0o755, epoch)
        elif stat.S_ISREG(st.st_mode):
            # git keeps only "executable or not"; the image does the same
            info = _info(name, tarfile.REGTYPE, 0o755 if st.st_mode & 0o111 else 0o644, epoch)
            info.size = st.st_size
        else:
            raise BuildFailed(f"{name}: not a file, directory or symlink; remove it from git")
        return info

    def _config(self, request: BuildRequest, diff_id: Digest) -> bytes:
        run = request.spec.run
        doc = {
            "architecture": _arch(),
            "os": "linux",
            "created": _iso(request.source_date_epoch),
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/" + self._prefix,
                **({"Cmd": list(run.command)} if run.command else {}),
                **({"ExposedPorts": {f"{run.port}/tcp": {}}} if run.port else {}),
            },
            "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
            "history": [{"created": _iso(request.source_date_epoch), "created_by": "berth tree"}],
        }
        return canonical_json(doc)


def _info(name: str, kind: bytes, mode: int, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
