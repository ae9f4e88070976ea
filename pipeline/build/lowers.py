"""A stage's file system so far: its layers unpacked once, looked up without mounting.

Layers are unpacked by :class:`runners.runtime.layers.LayerStore` (overlayfs-style
whiteouts). :class:`LowerView` answers "what is at this path" the way the overlay
would — topmost layer first, stopping at whiteouts and opaque directories — so COPY
can learn whether a destination is a directory or read ``/etc/passwd`` for ``--chown``
without mounting anything.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pipeline.build.cache import BuildCache
from runners.oci.manifest import Descriptor

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


class LowerView:
    """Read-only lookups through layer directories given bottom first."""

    def __init__(self, layer_dirs: Sequence[Path]) -> None:
        self.top_first = list(reversed(layer_dirs))

    def lstat(self, rel: str) -> os.stat_result | None:
        parts = [p for p in rel.split("/") if p]
        if not parts:
            return os.lstat(self.top_first[0]) if self.top_first else None
        for layer in self.top_first:
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
                    return info
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
        parts = [p for p in rel.split("/") if p]
        info = self.lstat(rel)
        if info is None or not stat.S_ISREG(info.st_mode):
            return None
        for layer in self.top_first:
            path = layer.joinpath(*parts)
            try:
                if os.lstat(path).st_ino == info.st_ino:
                    return path.read_text(errors="replace")
            except OSError:
                continue
        return None

    def is_dir(self, rel: str) -> bool:
        info = self.lstat(rel)
        return info is not None and stat.S_ISDIR(info.st_mode)


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False
