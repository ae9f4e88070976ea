"""The router of one (app, environment): nftables rules that split connections by weight.

Rendering is pure: :func:`render_ruleset` returns the ``nft -f`` script for a
:class:`RouterEntry`; :mod:`pipeline.rollout.nftrouter` applies it. Each entry owns one
table, ``ip berth_rt_<app>_<env>``, so that replacing an entry never touches another::

    table ip berth_rt_demo_prod {
        counter release_1 { packets 0 bytes 0 }      # new connections per release
        counter release_2 { packets 0 bytes 0 }
        chain prerouting {                           # clients on other hosts
            type nat hook prerouting priority dstnat; policy accept;
            ip daddr 10.242.0.1 tcp dport 80 jump route
        }
        chain output {                               # clients on this machine
            type nat hook output priority -100; policy accept;
            ip daddr 10.242.0.1 tcp dport 80 jump route
        }
        chain postrouting {                          # replies must come back this way
            type nat hook postrouting priority srcnat; policy accept;
            ct original ip daddr 10.242.0.1 meta l4proto tcp ct original proto-dst 80 masquerade
        }
        chain route {                                # the weights: 90 % and 10 %
            numgen random mod 100 vmap { 0-89 : goto release_1, 90-99 : goto release_2 }
        }
        chain release_1 {                            # even split over the release's instances
            meta l4proto tcp counter name "release_1" dnat to numgen random mod 2 map { 0 : 10.241.1.2, 1 : 10.241.2.2 } : 8080
        }
        chain release_2 {
            meta l4proto tcp counter name "release_2" dnat to 10.241.3.2 : 8080
        }
    }

The script declares, deletes and re-creates the table in one transaction, so a weight
change is atomic: every new connection sees either the old rules or the new ones, and
established connections keep their translation (conntrack holds it). Routed connections
are masqueraded, so that an instance's reply passes this namespace again even when the
client sits on the instance's own host. Counters would
restart at zero with the table, so the script carries the previous values (``packets``
of a named counter) forward. With ``sticky`` the choice hashes the client address
(``jhash ip saddr``, with another seed for the instance) instead of drawing a random
number, so one client stays on one release while the weights do not change.

Only the first packet of a connection passes nat chains: the counters count connections
per release. The kernel cannot see HTTP statuses: request error rates and latencies for
an analysis are measured over HTTP against each release's instances, by the engine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from pipeline.rollout.errors import RouterError

__all__ = [
    "Backend",
    "Pool",
    "RouterEntry",
    "counter_name",
    "render_removal",
    "render_ruleset",
    "table_name",
]

_NAME_PART = re.compile(r"[^a-z0-9]+")
_TABLE_MAX = 32


@dataclass(frozen=True, order=True)
class Backend:
    """One instance's address; the entry's ``target_port`` is where it listens."""

    address: IPv4Address


@dataclass(frozen=True)
class Pool:
    """The instances of one release and the share of new connections they get."""

    release: int
    weight: int
    backends: tuple[Backend, ...] = ()


@dataclass(frozen=True)
class RouterEntry:
    """Where clients connect for (app, env), and how connections are split."""

    app: str
    env: str
    address: IPv4Address
    port: int
    target_port: int
    pools: tuple[Pool, ...] = ()
    sticky: bool = False
    counts: Mapping[int, tuple[int, int]] = field(default_factory=dict, hash=False)
    """Counter values (packets, bytes) per release to carry over into the new table."""

    def weights(self) -> dict[int, int]:
        return {p.release: p.weight for p in self.pools if p.weight > 0}


def table_name(app: str, env: str) -> str:
    """The entry's table: ``berth_rt_APP_ENV``, shortened with a hash when too long."""
    base = _NAME_PART.sub("_", f"{app}_{env}".lower()).strip("_")
    name = f"berth_rt_{base}"
    if len(name) > _TABLE_MAX:
        digest = hashlib.sha256(f"{app}\0{env}".encode()).hexdigest()[:8]
        name = f"{name[: _TABLE_MAX - 9]}_{digest}"
    return name


def counter_name(release: int) -> str:
    return f"release_{release}"


def render_ruleset(entry: RouterEntry) -> str:
    """The ``nft -f`` script that replaces the entry's table in one transaction."""
    _check(entry)
    table = table_name(entry.app, entry.env)
    pick = "jhash ip saddr mod {n}{seed}" if entry.sticky else "numgen random mod {n}"
    match = f"ip daddr {entry.address} tcp dport {entry.port}"
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]
    for pool in entry.pools:
        packets, size = entry.counts.get(pool.release, (0, 0))
        lines.append(f"\tcounter {counter_name(pool.release)} {{ packets {packets} bytes {size} }}")
    lines += [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        f"\t\t{match} jump route",
        "\t}",
        "\tchain output {",
        "\t\ttype nat hook output priority -100; policy accept;",
        f"\t\t{match} jump route",
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        f"\t\tct original ip daddr {entry.address} meta l4proto tcp ct original proto-dst {entry.port} masquerade",
        "\t}",
        "\tchain route {",
    ]
    ranges, start = [], 0
    for pool in entry.pools:
        if pool.weight > 0:
            end = start + pool.weight - 1
            span = str(start) if start == end else f"{start}-{end}"
            ranges.append(f"{span} : goto {counter_name(pool.release)}")
            start = end + 1
    if ranges:
        lines.append(f"\t\t{pick.format(n=100, seed='')} vmap {{ {', '.join(ranges)} }}")
    lines.append("\t}")
    for pool in entry.pools:
        name = counter_name(pool.release)
        lines.append(f"\tchain {name} {{")
        backends = sorted(pool.backends)
        if len(backends) == 1:
            target = f"{backends[0].address} : {entry.target_port}"
        elif backends:
            elements = ", ".join(f"{i} : {b.address}" for i, b in enumerate(backends))
            # another seed, so the instance does not follow from the release's range
            choice = pick.format(n=len(backends), seed=" seed 0x1")
            target = f"{choice} map {{ {elements} }} : {entry.target_port}"
        else:
            target = ""
        if target:
            lines.append(f'\t\tmeta l4proto tcp counter name "{name}" dnat to {target}')
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_removal(app: str, env: str) -> str:
    """The script that removes the entry's table, and succeeds when there is none."""
    table = table_name(app, env)
    return f"table ip {table}\ndelete table ip {table}\n"


def _check(entry: RouterEntry) -> None:
    where = f"router of {entry.app}/{entry.env}"
    for what, port in (("port", entry.port), ("target port", entry.target_port)):
        if not 1 <= port <= 65535:
            raise RouterError(f"{where}: {what} {port} must be between 1 and 65535")
    releases = [p.release for p in entry.pools]
    if len(set(releases)) != len(releases):
        raise RouterError(f"{where}: a release appears twice in {releases}")
    total = sum(p.weight for p in entry.pools)
    if any(p.weight < 0 for p in entry.pools) or total not in (0, 100):
        weights = {p.release: p.weight for p in entry.pools}
        raise RouterError(f"{where}: weights {weights} must be 0 or more and add up to 100")
    for pool in entry.pools:
        if pool.weight > 0 and not pool.backends:
            raise RouterError(
                f"{where}: release {pool.release} gets {pool.weight} % of connections but has "
                "no healthy instance to send them to"
            )
