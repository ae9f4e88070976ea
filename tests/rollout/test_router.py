"""The router's nftables script, exactly; and the checks that keep it sendable."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from pipeline.rollout.errors import RouterError
from pipeline.rollout.router import (
    Backend,
    Pool,
    RouterEntry,
    render_removal,
    render_ruleset,
    table_name,
)

pytestmark = pytest.mark.unit

ENTRY = IPv4Address("10.240.0.200")


def backends(*last: int) -> tuple[Backend, ...]:
    return tuple(Backend(IPv4Address(f"10.241.{n}.2")) for n in last)


def test_weights_become_ranges_and_instances_an_even_split() -> None:
    entry = RouterEntry(
        "demo",
        "prod",
        ENTRY,
        80,
        8080,
        (Pool(1, 90, backends(2, 1)), Pool(2, 10, backends(3))),
        counts={1: (5, 300)},
    )
    assert render_ruleset(entry) == (
        "table ip berth_rt_demo_prod\n"
        "delete table ip berth_rt_demo_prod\n"
        "table ip berth_rt_demo_prod {\n"
        "\tcounter release_1 { packets 5 bytes 300 }\n"
        "\tcounter release_2 { packets 0 bytes 0 }\n"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        "\t\tip daddr 10.240.0.200 tcp dport 80 jump route\n"
        "\t}\n"
        "\tchain output {\n"
        "\t\ttype nat hook output priority -100; policy accept;\n"
        "\t\tip daddr 10.240.0.200 tcp dport 80 jump route\n"
        "\t}\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        "\t\tct original ip daddr 10.240.0.200 meta l4proto tcp ct original proto-dst 80 masquerade\n"
        "\t}\n"
        "\tchain route {\n"
        "\t\tnumgen random mod 100 vmap { 0-89 : goto release_1, 90-99 : goto release_2 }\n"
        "\t}\n"
        "\tchain release_1 {\n"
        '\t\tmeta l4proto tcp counter name "release_1" dnat to numgen random mod 2 '
        "map { 0 : 10.241.1.2, 1 : 10.241.2.2 } : 8080\n"
        "\t}\n"
        "\tchain release_2 {\n"
        '\t\tmeta l4proto tcp counter name "release_2" dnat to 10.241.3.2 : 8080\n'
        "\t}\n"
        "}\n"
    )


def test_sticky_hashes_the_client_address_and_a_zero_weight_pool_gets_no_range() -> None:
    entry = RouterEntry(
        "demo",
        "prod",
        ENTRY,
        80,
        8080,
        (Pool(1, 0, backends(1)), Pool(2, 1, backends(2)), Pool(3, 99, backends(3, 4))),
        sticky=True,
    )
    text = render_ruleset(entry)
    assert "\t\tjhash ip saddr mod 100 vmap { 0 : goto release_2, 1-99 : goto release_3 }\n" in text
    assert (
        "dnat to jhash ip saddr mod 2 seed 0x1 map { 0 : 10.241.3.2, 1 : 10.241.4.2 } : 8080\n"
        in text
    )
    # release 1 keeps its counter and chain (nothing jumps there) while it drains
    assert "\tcounter release_1 { packets 0 bytes 0 }\n" in text
    assert entry.weights() == {2: 1, 3: 99}


def test_an_entry_without_weights_routes_nothing() -> None:
    text = render_ruleset(RouterEntry("demo", "prod", ENTRY, 80, 8080))
    assert "\tchain route {\n\t}\n" in text
    assert "dnat" not in text


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ((Pool(1, 90, backends(1)),), r"weights \{1: 90\} must be 0 or more and add up to 100"),
        ((Pool(1, 50, backends(1)), Pool(1, 50, backends(2))), "a release appears twice"),
        ((Pool(1, 100),), "release 1 gets 100 % of connections but has no healthy instance"),
    ],
)
def test_a_ruleset_that_would_misroute_is_refused(pools: tuple[Pool, ...], message: str) -> None:
    with pytest.raises(RouterError, match=message):
        render_ruleset(RouterEntry("demo", "prod", ENTRY, 80, 8080, pools))
    with pytest.raises(RouterError, match="port 0 must be between 1 and 65535"):
        render_ruleset(RouterEntry("demo", "prod", ENTRY, 0, 8080))


def test_table_names_are_nft_identifiers_of_at_most_32_chars() -> None:
    assert table_name("demo", "prod") == "berth_rt_demo_prod"
    assert table_name("My-App", "pre-prod") == "berth_rt_my_app_pre_prod"
    long = table_name("a-very-long-application-name", "functional-test")
    assert len(long) == 32
    assert long != table_name("a-very-long-application-name", "functional-tests")
    assert render_removal("demo", "prod") == (
        "table ip berth_rt_demo_prod\ndelete table ip berth_rt_demo_prod\n"
    )
