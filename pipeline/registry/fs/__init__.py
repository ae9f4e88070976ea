"""The registry's storage on a local directory (:class:`FilesystemRegistryStorage`)."""

from __future__ import annotations

from pipeline.registry.fs.storage import FilesystemRegistryStorage

__all__ = ["FilesystemRegistryStorage"]
