"""Helpers for tests that run simulated hosts: free address ranges, berth's nftables
tables, and temp directories the containers' unprivileged root user can traverse."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Network
from pathlib import Path

from runners.net.links import networks_in_use


def free_ranges() -> tuple[str, str]:
    """A cluster link /24 and a container pool /17 nothing on this machine uses (other
    runs may be going on at once)."""
    used = networks_in_use()
    candidates = list(range(160, 230))
    random.shuffle(candidates)
    for second in candidates[:40]:
        link = IPv4Network(f"10.{second}.0.0/24")
        pool = IPv4Network(f"10.{second}.128.0/17")
        if not any(n.overlaps(link) or n.overlaps(pool) for n in used):
            return str(link), str(pool)
    raise AssertionError("no free 10.x.0.0/16 range for the test cluster")


def berth_tables() -> set[str]:
    """Names of the nftables tables berth made (router and host tables)."""
    listing = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[-1] for line in listing.splitlines() if "berth" in line}


@contextmanager
def traversable_tempdir(prefix: str) -> Iterator[Path]:
    """A temp dir with mode 0711, removed afterwards. Not pytest's tmp_path: its parents
    are 0700, and a user-namespaced container's root must traverse down to the root
    filesystems kept below it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o711)  # noqa: S103 -- traversal only, nothing listable
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
