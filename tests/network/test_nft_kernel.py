from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from runners.network import (
    PublishedPort,
    create_netns,
    remove_netns,
    render_nft_ruleset,
    run_nft,
    table_names,
)
from tests.network.support import unique

pytestmark = pytest.mark.privileged


def test_nft_accepts_the_rendered_ruleset(no_leaks: None) -> None:
    name = unique("btnft")
    create_netns(name)
    try:
        text = render_nft_ruleset(
            IPv4Network("10.241.7.0/24"),
            [
                PublishedPort("tcp", 8080, IPv4Address("10.241.7.2"), 80),
                PublishedPort("udp", 53, IPv4Address("10.241.7.3"), 5353),
            ],
        )
        run_nft(text, netns=name, check_only=True)
        assert table_names(netns=name) == []
        run_nft(text, netns=name)
        run_nft(text, netns=name)  # replacing is idempotent
        assert table_names(netns=name) == ["inet berth"]
        listing = run_nft("list table inet berth\n", netns=name)
        assert "tcp . 8080 : 10.241.7.2 . 80" in listing
    finally:
        remove_netns(name)
