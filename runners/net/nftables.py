"""The host's nftables table: published ports (DNAT) and hairpin masquerade.

Everything berth adds to a host's kernel rules lives in one table (``inet berth`` by
default), so removing berth from a host is one ``delete table``. The text is produced
by pure functions and applied as one transaction (through ``libnftables`` in-process,
or ``nft -f -`` where the library is missing).

Published ports are elements of the map ``published``
(``protocol . host port : container address . container port``) so that publishing
or unpublishing a port changes one element, never the chains. Two hooks consult it:
``prerouting`` for connections arriving from other hosts and ``output`` for
connections made on the host itself; both only for addresses local to the host, so
traffic merely routed through the host to another host's port is left alone.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from runners.errors import NetworkError, SubprocessError
from runners.net import libnft
from runners.net.errors import InvalidNetworkInput
from runners.net.namespaces import nsenter_argv

Protocol = Literal["tcp", "udp"]
DEFAULT_TABLE = "berth"
MAP_NAME = "published"
LOOPBACK = IPv4Network("127.0.0.0/8")
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


@dataclass(frozen=True, order=True)
class PublishedPort:
    """Connections to the host's ``host_port`` go to ``container_ip:container_port``."""

    protocol: Protocol
    host_port: int
    container_ip: IPv4Address
    container_port: int

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp"):
            raise InvalidNetworkInput(f"protocol {self.protocol!r}: use tcp or udp")
        for what, port in (("host port", self.host_port), ("container port", self.container_port)):
            if not 1 <= port <= 65535:
                raise InvalidNetworkInput(f"{what} {port}: must be between 1 and 65535")

    @property
    def key(self) -> str:
        return f"{self.protocol} . {self.host_port}"

    @property
    def element(self) -> str:
        return f"{self.key} : {self.container_ip} . {self.container_port}"


def validate_table_name(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise InvalidNetworkInput(
            f"nftables table {name!r}: use a letter then up to 31 letters, digits or '_'"
        )
    return name


def render_nft_ruleset(
    subnet: IPv4Network,
    ports: Iterable[PublishedPort] = (),
    *,
    table: str = DEFAULT_TABLE,
) -> str:
    """The script that (re)creates the host's table with ``ports`` published.

    It first declares and deletes the table, so applying it replaces whatever berth had
    before in one transaction. ``subnet`` is the host's container subnet: a container
    reaching a port published on its own host is masqueraded so replies come back the
    way they went (hairpin), and so is a connection from the host's loopback (with
    ``route_localnet`` on the bridge). ``localnet_guard`` drops packets for 127.0.0.0/8
    that arrive on any other interface and are not replies of such connections, as
    route_localnet would otherwise accept them.
    """
    validate_table_name(table)
    elements = sorted(set(ports))
    seen: set[str] = set()
    for port in elements:
        if port.key in seen:
            raise InvalidNetworkInput(f"port {port.key}: published twice in one ruleset")
        seen.add(port.key)
    lines = [
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        f"\tmap {MAP_NAME} {{",
        "\t\ttype inet_proto . inet_service : ipv4_addr . inet_service",
    ]
    if elements:
        lines.append(f"\t\telements = {{ {', '.join(p.element for p in elements)} }}")
    dnat = f"fib daddr type local dnat ip to meta l4proto . th dport map @{MAP_NAME}"
    lines += [
        "\t}",
        "",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority -100; policy accept;",
        f"\t\t{dnat}",
        "\t}",
        "",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        f"\t\t{dnat}",
        "\t}",
        "",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority 100; policy accept;",
        f"\t\tct status dnat ip saddr {subnet} ip daddr {subnet} masquerade",
        f"\t\tct status dnat ip saddr {LOOPBACK} ip daddr {subnet} masquerade",
        "\t}",
        "",
        "\tchain localnet_guard {",
        "\t\ttype filter hook input priority 0; policy accept;",
        f'\t\tiif != "lo" ip daddr {LOOPBACK} ct status & dnat == 0 drop',
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def add_element_script(port: PublishedPort, *, table: str = DEFAULT_TABLE) -> str:
    """The script that publishes ``port`` in an existing table; fails if its key is taken."""
    return f"create element inet {validate_table_name(table)} {MAP_NAME} {{ {port.element} }}\n"


def delete_element_script(port: PublishedPort, *, table: str = DEFAULT_TABLE) -> str:
    """The script that unpublishes ``port`` from an existing table."""
    return f"delete element inet {validate_table_name(table)} {MAP_NAME} {{ {port.key} }}\n"


def delete_table_script(table: str = DEFAULT_TABLE) -> str:
    """The script that removes the table if it exists, and succeeds if it does not."""
    name = validate_table_name(table)
    return f"table inet {name}\ndelete table inet {name}\n"


def parse_published(listing: str) -> list[PublishedPort]:
    """The published ports in the output of ``nft -j list map inet TABLE published``."""
    try:
        items = json.loads(listing)["nftables"]
        found = []
        for item in items:
            if "map" not in item:
                continue
            for key, value in item["map"].get("elem", []):
                protocol, host_port = key["concat"]
                address, container_port = value["concat"]
                found.append(
                    PublishedPort(
                        protocol, int(host_port), IPv4Address(address), int(container_port)
                    )
                )
    except (KeyError, TypeError, ValueError) as exc:
        raise NetworkError(f"nft: unexpected map listing ({exc})") from exc
    return sorted(found)


def nft_argv(
    script: str = "",
    *,
    netns: str | None = None,
    check_only: bool = False,
    json_output: bool = False,
    binary: str = "nft",
) -> list[str]:
    """The ``nft`` command line for ``script``: read from stdin (``-f -``), except with
    ``json_output``, where the command prints JSON only for a single command given as
    arguments (``nft -j list …``)."""
    if json_output:
        return nsenter_argv(netns, [binary, "-j", *script.split()])
    return nsenter_argv(netns, [binary, *(["-c"] if check_only else []), "-f", "-"])


def execute(
    script: str,
    *,
    netns: str | None = None,
    check_only: bool = False,
    json_output: bool = False,
    binary: str = "nft",
    timeout: float | None = None,
) -> libnft.Outcome:
    """Run the nft ``script`` inside ``netns``; its exit status, output and error text.

    In-process through ``libnftables`` where it loads (:mod:`runners.net.libnft`) and
    ``binary`` is the plain ``nft``; otherwise that command, with ``timeout``. With
    ``json_output`` the script is one ``list`` command.
    """
    if binary == "nft" and libnft.available():
        return libnft.run(script, netns=netns, check_only=check_only, json_output=json_output)
    argv = nft_argv(
        script, netns=netns, check_only=check_only, json_output=json_output, binary=binary
    )
    try:
        done = subprocess.run(
            argv,
            input=None if json_output else script,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise NetworkError(f"{argv[0]}: not installed (apt-get install nftables)") from exc
    except subprocess.TimeoutExpired as exc:
        raise NetworkError(f"{' '.join(argv)}: no answer within {timeout}s") from exc
    return libnft.Outcome(done.returncode, done.stdout, done.stderr)


def run_nft(script: str, *, netns: str | None = None, check_only: bool = False) -> str:
    """Apply ``script`` as ``nft -f -`` would, inside ``netns`` (``-c``: only check it).

    A failure is a :class:`SubprocessError` with nft's error text.
    """
    outcome = execute(script, netns=netns, check_only=check_only)
    if outcome.returncode != 0:
        argv = nft_argv(netns=netns, check_only=check_only)
        raise SubprocessError(argv, outcome.returncode, outcome.stderr)
    return outcome.stdout


def list_nft(what: list[str], *, netns: str | None = None) -> str | None:
    """``nft -j list WHAT...`` as JSON text, or None when the object does not exist."""
    outcome = execute(f"list {' '.join(what)}\n", netns=netns, json_output=True)
    if outcome.returncode == 0:
        return outcome.stdout
    if "No such file or directory" in outcome.stderr:
        return None
    argv = nft_argv(f"list {' '.join(what)}", netns=netns, json_output=True)
    raise SubprocessError(argv, outcome.returncode, outcome.stderr)


def table_names(*, netns: str | None = None) -> list[str]:
    """``family name`` of every nftables table in ``netns``."""
    listing = list_nft(["tables"], netns=netns) or '{"nftables": []}'
    items = json.loads(listing)["nftables"]
    return sorted(f"{i['table']['family']} {i['table']['name']}" for i in items if "table" in i)
