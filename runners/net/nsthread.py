"""Running code inside another network namespace without moving the process.

``setns`` of a network namespace affects only the calling thread, so ``in_netns`` runs a
function on a short-lived thread that has entered the namespace; the rest of the
process (the agent's event loop) never changes namespace. Python 3.11 has no
``os.setns``, hence ctypes.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runners.errors import NetworkError
from runners.net.names import netns_path
from runners.threads import spawn

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def unshare_netns() -> None:
    """Move the calling *thread* into a new network namespace (others are unaffected)."""
    if _libc().unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetworkError(f"unshare a network namespace: {os.strerror(errno)}")


def on_thread(func: Callable[[], T], name: str) -> T:
    """Call ``func`` on a short-lived thread of its own (free to change its namespace)."""
    return spawn(func, name).result()


def _setns(fd: int, where: str) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetworkError(f"setns into {where}: {os.strerror(errno)}")


def in_netns(path: str | None, func: Callable[[], T]) -> T:
    """Call ``func`` on a thread inside the network namespace at ``path`` (None: here).

    Sockets created by ``func`` belong to that namespace for their whole life, and
    ``/proc/thread-self/net`` and ``/proc/sys/net`` describe it.
    """
    if path is None:
        return func()

    def run() -> T:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetworkError(f"network namespace {path}: cannot open: {exc}") from exc
        try:
            _setns(target, path)
            return func()
        finally:
            os.close(target)
            # the thread ends here, so its namespace need not be restored

    return on_thread(run, f"netns:{path}")


def set_sysctl(netns: str | None, key: str, value: str) -> None:
    """Write ``value`` to ``/proc/sys/<key>`` inside ``netns`` (dotted key, net.* only)."""
    if not key.startswith("net.") or ".." in key:
        raise ValueError(f"sysctl {key}: only net.* keys are namespaced")
    _write_sysctl(netns, Path("/proc/sys") / key.replace(".", "/"), key, value)


def set_interface_sysctl(netns: str | None, ifname: str, leaf: str, value: str) -> None:
    """Write ``/proc/sys/net/ipv4/conf/IFNAME/LEAF`` inside ``netns``.

    Apart from :func:`set_sysctl` because interface names may contain dots.
    """
    if "/" in ifname or ifname in ("", ".", "..") or not leaf.isidentifier():
        raise ValueError(f"sysctl of interface {ifname!r}, {leaf!r}: not an interface setting")
    target = Path("/proc/sys/net/ipv4/conf") / ifname / leaf
    _write_sysctl(netns, target, f"net.ipv4.conf.{ifname}.{leaf}", value)


def _write_sysctl(netns: str | None, target: Path, key: str, value: str) -> None:
    try:
        in_netns(None if netns is None else netns_path(netns), lambda: target.write_text(value))
    except OSError as exc:
        raise NetworkError(f"sysctl {key}={value} in {netns or 'this namespace'}: {exc}") from exc
