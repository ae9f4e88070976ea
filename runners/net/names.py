"""Names of interfaces and network namespaces (pure).

Linux caps interface names at 15 bytes (IFNAMSIZ - 1), so names that depend on a
container or cluster name are derived from a hash: short, stable across restarts (an
agent can find a container's veth again from its name alone) and collision-resistant.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from runners.net.errors import InvalidNetworkInput

IFNAMSIZ = 16
MAX_IFNAME = IFNAMSIZ - 1
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_NETNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NETNS_NAME = 200

NETNS_DIR = Path("/run/netns")

# Inside a container's namespace its interface always has this name.
CONTAINER_IFNAME = "eth0"


def validate_ifname(name: str) -> str:
    """Return ``name`` if Linux accepts it as an interface name, else raise."""
    if not name or len(name.encode()) > MAX_IFNAME:
        raise InvalidNetworkInput(
            f"interface name {name!r}: must be 1 to {MAX_IFNAME} bytes (Linux IFNAMSIZ);"
            " choose a shorter name"
        )
    if not _IFNAME.match(name) or name in {".", ".."}:
        raise InvalidNetworkInput(
            f"interface name {name!r}: use only letters, digits, '_', '.' and '-'"
        )
    return name


def validate_netns_name(name: str) -> str:
    """Return ``name`` if it is usable as a file name under ``/run/netns``, else raise."""
    if len(name) > MAX_NETNS_NAME or not _NETNS.match(name):
        raise InvalidNetworkInput(
            f"network namespace name {name!r}: use 1 to {MAX_NETNS_NAME} letters, digits,"
            " '_', '.' or '-', starting with a letter or digit"
        )
    return name


def hashed_ifname(prefix: str, *parts: str) -> str:
    """An interface name ``prefix`` + hex digest of ``parts``, exactly 15 bytes long."""
    if not 1 <= len(prefix) <= 5 or not _IFNAME.match(prefix):
        raise ValueError(f"interface name prefix {prefix!r} must be 1 to 5 plain characters")
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return prefix + digest[: MAX_IFNAME - len(prefix)]


def host_veth_name(container: str) -> str:
    """The host end of a container's veth pair (lives on the host's bridge)."""
    return hashed_ifname("vb", container)


def peer_veth_name(container: str) -> str:
    """The temporary name of the container end before it is renamed inside its netns."""
    return hashed_ifname("vp", container)


def container_netns_name(prefix: str, container: str) -> str:
    """The named netns of a container: ``<prefix>-<container>``.

    Named namespaces are global to the machine (``/run/netns``), so the prefix (a
    host's name) keeps the containers of simulated hosts on one machine apart.
    """
    return validate_netns_name(f"{prefix}-{container}")


def netns_path(name_or_path: str) -> str:
    """``/run/netns/NAME`` for a name; any path (``/proc/PID/ns/net``) is returned as is."""
    if "/" in name_or_path:
        return name_or_path
    return str(NETNS_DIR / validate_netns_name(name_or_path))
