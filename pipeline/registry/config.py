"""Tunables of the registry's HTTP API (frozen; built by the CLI or ``berth serve``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.registry.paging import MAX_PAGE
from runners.oci.manifest import MAX_MANIFEST_SIZE


@dataclass(frozen=True)
class RegistryConfig:
    """How the registry's API behaves.

    ``body_idle_timeout``: an upload that sends nothing for this long is abandoned (its
    session keeps the bytes received so far). ``max_blob_size``: refuse larger blobs
    (``None``: only free disk space limits them). ``max_concurrent_uploads``: more
    uploads at once are answered 429 ``TOO_MANY_REQUESTS``. ``sweep_interval``: how often
    a standalone registry removes expired upload sessions.
    """

    max_manifest_size: int = MAX_MANIFEST_SIZE
    max_page: int = MAX_PAGE
    max_blob_size: int | None = None
    max_concurrent_uploads: int = 64
    body_idle_timeout: float = 300.0
    delete_enabled: bool = True
    sweep_interval: float = 60.0
