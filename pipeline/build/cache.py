"""The build cache: layer blobs by step key, base images by digest, unpacked layers.

One directory holds it all::

    <cache>/images/     an OCI image layout: every blob (layers, configs, manifests) and
                        the local image store FROM resolves first (tags are references)
    <cache>/steps/      <key>.json per built step: the layer it made (LRU by mtime)
    <cache>/unpacked/   layers unpacked for RUN root filesystems (runners.runtime)
    <cache>/donors/     per COPY instruction, the directory it last wrote and the content
                        digest of each file there (unchanged files are linked from it)
    <cache>/tmp/        scratch space of running steps

A step's entry is written only after its blob is complete and verified, so a failed or
interrupted step leaves nothing a later build could reuse. :meth:`BuildCache.prune`
evicts least-recently-used step entries until the cache fits its cap, then removes the
blobs and unpacked layers nothing refers to any more.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from runners.errors import ManifestError, OCIError
from runners.oci.digest import Digest
from runners.oci.layout import OCILayout
from runners.oci.manifest import MAX_MANIFEST_SIZE, ImageIndex, ImageManifest, parse_manifest
from runners.runtime.layers import LayerStore
from runners.runtime.unpack import Donor

DEFAULT_MAX_BYTES = 10 * 1024**3


@dataclass(frozen=True)
class CachedLayer:
    """The layer one step made: blob digest and size, diff id, media type."""

    digest: Digest
    size: int
    diff_id: Digest
    media_type: str

    def to_json(self) -> dict[str, object]:
        return {
            "digest": str(self.digest),
            "size": self.size,
            "diff_id": str(self.diff_id),
            "media_type": self.media_type,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> CachedLayer:
        return cls(
            digest=Digest.parse(str(doc["digest"])),
            size=int(str(doc["size"])),
            diff_id=Digest.parse(str(doc["diff_id"])),
            media_type=str(doc["media_type"]),
        )


@dataclass(frozen=True)
class PruneResult:
    """What a prune removed."""

    steps: int
    blobs: int
    layers: int
    freed_bytes: int


SCRATCH_LOCK = ".in-use"
STALE_UNLOCKED_AFTER = 60.0


class BuildCache:
    """The cache directory (see the module docstring); cheap to construct."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # absolute: RUN steps hand paths below it to the OCI runtime, which needs them so
        self.root = Path(root).absolute()
        self.max_bytes = max_bytes
        self._images: OCILayout | None = None
        # scratch dir -> the descriptor holding its lock; the lock dies with the process
        self._held: dict[Path, int] = {}
        self._swept = False

    @property
    def images(self) -> OCILayout:
        if self._images is None:
            self._images = OCILayout.create(self.root / "images")
        return self._images

    @property
    def steps_dir(self) -> Path:
        return self.root / "steps"

    @property
    def layers_root(self) -> Path:
        return self.root / "unpacked"

    @property
    def donors_dir(self) -> Path:
        return self.root / "donors"

    def donor(self, key: str) -> Donor | None:
        """The directory last written for the COPY ``key`` names, while it is still here:
        its unchanged files can be linked into the next version (:class:`Donor`)."""
        try:
            doc = json.loads((self.donors_dir / f"{key}.json").read_bytes())
            layer = Digest.parse(doc["layer"])
            files = {str(name): str(digest) for name, digest in doc["files"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, OCIError):
            return None  # none yet, or unreadable: the directory is written in full
        root = LayerStore(self.layers_root).path_of(layer)
        return Donor(root, files) if root.is_dir() else None

    def record_donor(self, key: str, layer: Digest, files: Mapping[str, str]) -> None:
        """Remember that the COPY ``key`` names wrote ``files`` (name -> content digest)
        into the directory of ``layer``."""
        self.donors_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".donor-", dir=self.donors_dir)
        try:
            with os.fdopen(fd, "w") as stream:
                json.dump({"layer": str(layer), "files": dict(files)}, stream)
            os.replace(tmp, self.donors_dir / f"{key}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def scratch(self, prefix: str) -> Path:
        """A fresh private directory for one step's work, locked while this process
        lives; give it back with :meth:`release_scratch`."""
        if not self._swept:
            self._swept = True
            self.clean_stale_scratch()
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))
        fd = os.open(path / SCRATCH_LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._held[path] = fd
        return path

    def release_scratch(self, path: Path) -> None:
        """Delete a scratch directory (its mounts already undone) and drop its lock."""
        shutil.rmtree(path, ignore_errors=True)
        fd = self._held.pop(path, None)
        if fd is not None:
            os.close(fd)

    def clean_stale_scratch(self, reap: Callable[[Path], None] | None = None) -> int:
        """Remove scratch directories that no living process holds: what a build killed
        mid-step (``kill -9`` of ``berth serve``) left behind. ``reap`` first stops the
        step's container and undoes its mounts. Returns how many were removed."""
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return 0
        if reap is None:
            from pipeline.build.run import reap_workspace

            reap = reap_workspace
        removed = 0
        for path in sorted(tmp.iterdir()):
            if path in self._held or not path.is_dir():
                continue
            try:
                fd = os.open(path / SCRATCH_LOCK, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                # made by a process that has not locked it yet, or by an older berth
                if time.time() - path.stat().st_mtime < STALE_UNLOCKED_AFTER:
                    continue
                fd = None
            try:
                if fd is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a living build uses it
                reap(path)
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
            finally:
                if fd is not None:
                    os.close(fd)
        return removed

    # step entries

    def lookup(self, key: str) -> CachedLayer | None:
        """The layer cached for ``key``, if its blob is still there; marks it used."""
        path = self.steps_dir / f"{key}.json"
        try:
            layer = CachedLayer.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged entry is a miss, and is dropped
            return None
        if not self.images.has_blob(layer.digest):
            path.unlink(missing_ok=True)
            return None
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(path, (now, now))
        return layer

    def record(self, key: str, layer: CachedLayer) -> None:
        """Remember that step ``key`` made ``layer`` (its blob is already stored)."""
        self.steps_dir.mkdir(parents=True, exist_ok=True)
        path = self.steps_dir / f"{key}.json"
        fd, tmp = tempfile.mkstemp(prefix=".entry-", dir=self.steps_dir)
        with os.fdopen(fd, "w") as stream:
            json.dump(layer.to_json(), stream)
        os.replace(tmp, path)

    @contextlib.contextmanager
    def new_blob(self) -> Iterator[tuple[Path, list[Digest]]]:
        """A temp file for a blob being written; the caller appends its digest to the list
        to keep it, and it is moved into the store when the block ends without error."""
        blobs = self.images.root / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".building-", dir=blobs)
        os.close(fd)
        os.chmod(tmp, 0o644)
        path = Path(tmp)
        result: list[Digest] = []
        try:
            yield path, result
            if result:
                os.replace(path, self.images.blob_path(result[0]))
        finally:
            path.unlink(missing_ok=True)

    # size and pruning

    def size(self) -> int:
        """Bytes the cache holds on disk (files only, hard links counted once)."""
        total = 0
        seen: set[tuple[int, int]] = set()
        for directory, _, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(OSError):
                    info = os.lstat(os.path.join(directory, name))
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        total += info.st_blocks * 512
        return total

    def estimate(self) -> int:
        """A cheap upper estimate of :meth:`size`: the blobs, counted twice for the
        unpacked layers made from them (one directory listing, no tree walk)."""
        blobs = self.root / "images" / "blobs" / "sha256"
        if not blobs.is_dir():
            return 0
        return 2 * sum(entry.stat().st_size for entry in os.scandir(blobs) if entry.is_file())

    def prune_if_full(self) -> PruneResult | None:
        """Prune only when the estimate says the cap may be exceeded (after each build)."""
        if self.estimate() <= self.max_bytes:
            return None
        return self.prune()

    def prune(self, max_bytes: int | None = None, *, everything: bool = False) -> PruneResult:
        """Evict least-recently-used steps until the cache fits ``max_bytes`` (0 or
        ``everything``: all steps), then drop blobs and unpacked layers no step and no
        tagged image uses. Tagged images go too when ``everything`` is set."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        before = self.size() if self.root.exists() else 0
        entries = (
            sorted(self.steps_dir.glob("*.json"), key=_mtime) if self.steps_dir.is_dir() else []
        )
        removed_steps = 0
        if everything or limit <= 0:
            for entry in entries:
                entry.unlink(missing_ok=True)
                removed_steps += 1
            entries = []
        if everything and (self.root / "images").exists():
            shutil.rmtree(self.root / "images")
            self._images = None
        if everything:
            shutil.rmtree(self.donors_dir, ignore_errors=True)
        blobs, layers = self._collect()
        current = self.size() if self.root.exists() else 0
        while entries and current > limit:
            entry = entries.pop(0)
            with contextlib.suppress(OSError):
                entry.unlink()
                removed_steps += 1
            removed = self._collect()
            blobs, layers = blobs + removed[0], layers + removed[1]
            current = self.size()
        # scratch of builds still running (another thread, another process) stays
        self.clean_stale_scratch()
        after = self.size() if self.root.exists() else 0
        return PruneResult(removed_steps, blobs, layers, max(0, before - after))

    def _collect(self) -> tuple[int, int]:
        """Remove blobs and unpacked layers nothing refers to; return how many of each."""
        keep_blobs: set[str] = set()
        keep_layers: set[str] = set()
        if self.steps_dir.is_dir():
            for entry in self.steps_dir.glob("*.json"):
                with contextlib.suppress(ValueError, KeyError, OSError):
                    layer = CachedLayer.from_json(json.loads(entry.read_bytes()))
                    keep_blobs.add(layer.digest.hex)
                    keep_layers.add(layer.diff_id.hex)
        images_root = self.root / "images"
        if images_root.is_dir() and (images_root / "index.json").exists():
            for descriptor in self.images.index().manifests:
                self._keep_image(descriptor.digest, keep_blobs, keep_layers)
        removed_blobs = 0
        blob_dir = images_root / "blobs" / "sha256"
        if blob_dir.is_dir():
            for blob in blob_dir.iterdir():
                if blob.name not in keep_blobs and not blob.name.startswith(".building-"):
                    blob.unlink(missing_ok=True)
                    removed_blobs += 1
        removed_layers = 0
        layer_dir = self.layers_root / "layers" / "sha256"
        if layer_dir.is_dir():
            for unpacked in layer_dir.iterdir():
                if unpacked.name not in keep_layers and unpacked.name not in keep_blobs:
                    shutil.rmtree(unpacked, ignore_errors=True)
                    removed_layers += 1
        return removed_blobs, removed_layers

    def _keep_image(self, digest: Digest, blobs: set[str], layers: set[str]) -> None:
        if not self.images.has_blob(digest):
            return
        blobs.add(digest.hex)
        try:
            manifest = parse_manifest(self.images.read_blob(digest, MAX_MANIFEST_SIZE))
        except ManifestError:
            return
        if isinstance(manifest, ImageIndex):
            for child in manifest.manifests:
                self._keep_image(child.digest, blobs, layers)
            return
        assert isinstance(manifest, ImageManifest)
        for blob in manifest.blobs():
            blobs.add(blob.digest.hex)
        with contextlib.suppress(ValueError, KeyError, OSError, ManifestError):
            config = json.loads(self.images.read_blob(manifest.config.digest, MAX_MANIFEST_SIZE))
            for diff_id in config["rootfs"]["diff_ids"]:
                layers.add(str(diff_id).split(":", 1)[1])


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
