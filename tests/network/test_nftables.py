from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

import pytest

from runners.net.nftables import (
    add_element_script,
    delete_element_script,
    delete_table_script,
    parse_published,
)
from runners.network import InvalidNetworkInput, PublishedPort, render_nft_ruleset

pytestmark = pytest.mark.unit

SUBNET = IPv4Network("10.241.1.0/24")
WEB = PublishedPort("tcp", 8080, IPv4Address("10.241.1.2"), 80)
DNS = PublishedPort("udp", 5353, IPv4Address("10.241.1.3"), 53)

EXPECTED_EMPTY = """\
table inet berth
delete table inet berth
table inet berth {
\tmap published {
\t\ttype inet_proto . inet_service : ipv4_addr . inet_service
\t}

\tchain prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tfib daddr type local dnat ip to meta l4proto . th dport map @published
\t}

\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local dnat ip to meta l4proto . th dport map @published
\t}

\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tct status dnat ip saddr 10.241.1.0/24 ip daddr 10.241.1.0/24 masquerade
\t\tct status dnat ip saddr 127.0.0.0/8 ip daddr 10.241.1.0/24 masquerade
\t}

\tchain localnet_guard {
\t\ttype filter hook input priority 0; policy accept;
\t\tiif != "lo" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop
\t}
}
"""


def test_empty_ruleset_exact_text() -> None:
    assert render_nft_ruleset(SUBNET) == EXPECTED_EMPTY


def test_ruleset_with_ports_is_sorted_and_named() -> None:
    text = render_nft_ruleset(SUBNET, [DNS, WEB], table="berth_h1")
    lines = text.splitlines()
    assert lines[:3] == [
        "table inet berth_h1",
        "delete table inet berth_h1",
        "table inet berth_h1 {",
    ]
    assert lines[5] == (
        "\t\telements = { tcp . 8080 : 10.241.1.2 . 80, udp . 5353 : 10.241.1.3 . 53 }"
    )
    assert text == render_nft_ruleset(SUBNET, [WEB, DNS, WEB], table="berth_h1")


def test_one_host_port_cannot_go_to_two_containers() -> None:
    other = PublishedPort("tcp", 8080, IPv4Address("10.241.1.9"), 81)
    with pytest.raises(InvalidNetworkInput, match=r"tcp \. 8080: published twice"):
        render_nft_ruleset(SUBNET, [WEB, other])


def test_element_scripts() -> None:
    assert add_element_script(WEB) == (
        "create element inet berth published { tcp . 8080 : 10.241.1.2 . 80 }\n"
    )
    assert delete_element_script(DNS, table="t2") == (
        "delete element inet t2 published { udp . 5353 }\n"
    )
    assert delete_table_script("berth") == "table inet berth\ndelete table inet berth\n"


@pytest.mark.parametrize("table", ["", "1abc", "has-dash", "x" * 40, "semi;colon"])
def test_bad_table_names(table: str) -> None:
    with pytest.raises(InvalidNetworkInput, match="nftables table"):
        render_nft_ruleset(SUBNET, table=table)


@pytest.mark.parametrize(
    ("protocol", "host_port", "container_port", "message"),
    [
        ("sctp", 80, 80, "use tcp or udp"),
        ("tcp", 0, 80, "host port 0"),
        ("tcp", 80, 70000, "container port"),
    ],
)
def test_bad_ports(protocol: str, host_port: int, container_port: int, message: str) -> None:
    with pytest.raises(InvalidNetworkInput, match=message):
        PublishedPort(protocol, host_port, IPv4Address("10.0.0.2"), container_port)  # type: ignore[arg-type]


def test_parse_map_listing() -> None:
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {
                "map": {
                    "family": "inet",
                    "name": "published",
                    "table": "berth",
                    "elem": [
                        [{"concat": ["udp", 5353]}, {"concat": ["10.241.1.3", 53]}],
                        [{"concat": ["tcp", 8080]}, {"concat": ["10.241.1.2", 80]}],
                    ],
                }
            },
        ]
    }
    assert parse_published(json.dumps(listing)) == [WEB, DNS]
