from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest

from runners.errors import SubprocessError
from runners.net import libnft
from runners.net.namespaces import nsenter_argv
from runners.net.nftables import list_nft
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


def test_library_and_command_agree_and_report_errors_alike(no_leaks: None) -> None:
    # the in-process library is what berth uses; the nft command is the fallback
    assert libnft.available()
    name = unique("btlib")
    create_netns(name)
    try:
        text = render_nft_ruleset(
            IPv4Network("10.241.8.0/24"),
            [PublishedPort("tcp", 8081, IPv4Address("10.241.8.2"), 80)],
        )
        run_nft(text, netns=name)
        by_library = libnft.run("list table inet berth\n", netns=name, json_output=True)
        by_command = subprocess.run(
            nsenter_argv(name, ["nft", "-j", "list", "table", "inet", "berth"]),
            capture_output=True,
            text=True,
            check=True,
        )
        assert by_library.returncode == 0
        assert json.loads(by_library.stdout) == json.loads(by_command.stdout)

        # a syntax error quotes the line with a caret, as nft would, and changes nothing
        broken = "add element inet berth published { tcp . 9 : 10.241.8.2 . }\n"
        with pytest.raises(SubprocessError) as caught:
            run_nft(broken, netns=name)
        assert "syntax error" in caught.value.stderr_tail
        assert broken.strip() in caught.value.stderr_tail
        assert caught.value.stderr_tail.endswith("^")
        assert "tcp . 9 " not in run_nft("list table inet berth\n", netns=name)

        # hostile input: NUL bytes, an absent table, a huge script
        assert libnft.run("list tables\0flush ruleset\n", netns=name).returncode == 1
        assert list_nft(["table", "inet", "absent"], netns=name) is None
        with pytest.raises(SubprocessError):
            run_nft("add table inet " + "x" * 100_000 + "\n", netns=name)
        assert table_names(netns=name) == ["inet berth"]

        # a check-only run changes nothing
        run_nft("delete table inet berth\n", netns=name, check_only=True)
        assert table_names(netns=name) == ["inet berth"]
    finally:
        remove_netns(name)
