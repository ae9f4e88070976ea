"""Networking errors more specific than :class:`runners.errors.NetworkError`.

::

    NetworkError                     (runners.errors)
    ├── InvalidNetworkInput          a CIDR, interface name or namespace name is not usable
    ├── AddressesExhausted           a subnet has no free address left
    └── PortInUse                    a published port is already taken on the host
"""

from __future__ import annotations

from runners.errors import NetworkError


class InvalidNetworkInput(NetworkError):
    """A subnet, interface name or namespace name given to berth cannot be used."""


class AddressesExhausted(NetworkError):
    """Every address of a subnet is allocated; release one or use a larger subnet."""


class PortInUse(NetworkError):
    """A host port to publish is already published or has a listening socket."""
