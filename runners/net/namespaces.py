"""Named network namespaces and running code inside one.

A named namespace is a bind mount of a namespace file at ``/run/netns/NAME`` (the
convention ``ip netns`` uses), so it outlives the process that made it and runc can join
it by path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from pyroute2 import netns as pr_netns

from runners.errors import NetworkError
from runners.net.links import set_loopback_up
from runners.net.names import NETNS_DIR, netns_path
from runners.net.nsthread import on_thread, unshare_netns


def netns_exists(name: str) -> bool:
    """True when the named namespace ``name`` is mounted under ``/run/netns``."""
    return os.path.ismount(netns_path(name))


def list_netns(prefix: str = "") -> list[str]:
    """Names of the named namespaces that start with ``prefix``, sorted."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def create_netns(name: str, *, loopback: bool = True) -> str:
    """Create the named namespace ``name`` (loopback up unless not asked); return its path."""
    path = netns_path(name)
    if os.path.lexists(path):
        raise NetworkError(
            f"network namespace {name}: already exists at {path};"
            " remove it first (ip netns delete) or pick another name"
        )

    def make() -> None:
        # on a thread of its own, which enters the new namespace, names it and sets up
        # its loopback; no process is forked (pyroute2's netns.create forks one)
        unshare_netns()
        try:
            pr_netns.attach(name, "thread-self")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise NetworkError(f"network namespace {name}: could not create: {exc}") from exc
        if loopback:
            set_loopback_up(None)

    try:
        on_thread(make, f"netns-create:{name}")
    except NetworkError:
        if os.path.ismount(path):
            remove_netns(name)
        raise
    return path


def remove_netns(name: str) -> bool:
    """Unmount and delete the named namespace ``name``; False if it was not there."""
    path = netns_path(name)
    if not os.path.lexists(path):
        return False
    try:
        pr_netns.remove(name)
    except OSError as exc:
        raise NetworkError(f"network namespace {name}: could not remove {path}: {exc}") from exc
    return True


def create_container_netns(name: str) -> str:
    """Create a container's named namespace; return the path for runc.

    Its loopback comes up in :func:`runners.net.links.attach_container`, in the same
    netlink session that configures ``eth0`` (one session fewer per start). Use
    :func:`runners.net.names.container_netns_name` to build ``name`` so that containers
    of different hosts on one machine never collide.
    """
    return create_netns(name, loopback=False)


def remove_container_netns(name: str) -> bool:
    """Remove a container's named namespace; False if it was already gone."""
    return remove_netns(name)


def nsenter_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` by ``nsenter`` (only the network namespace changes)."""
    if netns is None:
        return list(argv)
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def netns_inode(path: str) -> tuple[int, int] | None:
    """(device, inode) identifying the namespace at ``path``, or None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_netns(path: str) -> list[int]:
    """Processes whose network namespace is the one at ``path`` (the caller excluded)."""
    wanted = netns_inode(path)
    if wanted is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if netns_inode(str(entry / "ns" / "net")) == wanted:
            found.append(int(entry.name))
    return sorted(found)
