"""Valid sample values for store tests."""

from __future__ import annotations

import hashlib


def commit(n: int) -> str:
    """A full SHA-1 commit id, distinct for each ``n``."""
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()


def digest(n: int) -> str:
    """A sha256 image digest, distinct for each ``n``."""
    return "sha256:" + hashlib.sha256(f"image {n}".encode()).hexdigest()
