"""How an instance gets its network: the :class:`InstanceNetwork` protocol and its kinds.

The agent asks for an :class:`Attachment` before a container starts and gives it back
after the container is gone. Making one has two halves: :meth:`InstanceNetwork.attach`
(the namespace and the address: what the runtime spec and ``/etc/hosts`` need, quick)
and :meth:`InstanceNetwork.connect` (links, routes, published ports), which runs while
the runtime creates the container — its process waits at the start gate until the
network is whole. What an attachment *is* depends on the implementation:

- :class:`IsolatedNetwork` — the container gets a network namespace of its own with
  only loopback (the runtime creates it). Nothing on the host changes, nothing can be
  published. Useful where no bridge may be made and as the second implementation
  tests run against.
- :class:`BridgeNetwork` (:mod:`runners.agent.bridge`) — a namespace joined to the host's
  bridge with an address, a default route and published ports, made by
  :mod:`runners.network`.

Host ports are checked here for every kind: a port another instance publishes, or one a
host socket is bound to, is refused before anything is created.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from runners.agent.errors import BadSpec, Conflict
from runners.agent.model import PortMapping


@dataclass(frozen=True)
class Attachment:
    """An instance's network as the runtime spec needs it.

    ``netns`` is the namespace file to join (``None``: the runtime makes a fresh one),
    ``address`` the instance's IPv4 address (``None``: reachable only from inside).
    """

    netns: str | None = None
    address: str | None = None
    gateway: str | None = None
    nameservers: tuple[str, ...] = ()


class InstanceNetwork(Protocol):
    """Gives instances their network and takes it back."""

    @property
    def kind(self) -> str: ...

    def attach(self, instance_id: str, ports: Sequence[PortMapping]) -> Attachment:
        """Reserve the instance's network (namespace, address); raise, leaving nothing
        behind, when it cannot. :meth:`connect` completes it."""
        ...

    def connect(
        self, instance_id: str, attachment: Attachment, ports: Sequence[PortMapping]
    ) -> None:
        """Complete what :meth:`attach` reserved (links, routes, ports); when it raises,
        :meth:`detach` removes whatever was made."""
        ...

    def detach(self, instance_id: str) -> None:
        """Remove everything :meth:`attach` made; nothing happens when nothing is left."""
        ...

    def attachment(self, instance_id: str) -> Attachment | None:
        """The attachment of an instance made earlier (by this or a previous agent)."""
        ...


class IsolatedNetwork:
    """:class:`InstanceNetwork` where each container has only its own loopback."""

    kind = "isolated"

    def attach(self, instance_id: str, ports: Sequence[PortMapping]) -> Attachment:
        if ports:
            raise BadSpec(
                f"instance {instance_id}: spec.ports: this agent runs with --network isolated,"
                " which cannot publish ports; start it with --network bridge"
            )
        return Attachment()

    def connect(
        self, instance_id: str, attachment: Attachment, ports: Sequence[PortMapping]
    ) -> None:
        return None

    def detach(self, instance_id: str) -> None:
        return None

    def attachment(self, instance_id: str) -> Attachment | None:
        return Attachment()


def check_host_ports(
    instance_id: str, wanted: Sequence[PortMapping], published: Iterable[tuple[str, PortMapping]]
) -> None:
    """Refuse ports another instance publishes or a host socket holds (:class:`Conflict`)."""
    taken = {(p.host, p.protocol): owner for owner, p in published if owner != instance_id}
    for port in wanted:
        owner = taken.get((port.host, port.protocol))
        if owner is not None:
            raise Conflict(
                f"instance {instance_id}: host port {port.host}/{port.protocol} is already"
                f" published by instance {owner}; pick another host port"
            )
        if not _bindable(port):
            raise Conflict(
                f"instance {instance_id}: host port {port.host}/{port.protocol} is already in"
                " use by a process on this host; pick another host port or stop that process"
            )


def _bindable(port: PortMapping) -> bool:
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):  # noqa: S104
        try:
            sock = socket.socket(family, kind)
        except OSError:
            continue  # no IPv6 on this host
        with contextlib.closing(sock):
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((address, port.host))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
    return True
