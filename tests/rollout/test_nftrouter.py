"""The router for real: nftables in a scratch network namespace splits connections by weight."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pipeline.rollout.nftrouter import NftRouter
from pipeline.rollout.router import Backend, Pool, RouterEntry
from runners.net.namespaces import create_netns, netns_path, remove_netns
from tests.helpers.procs import ProcessLauncher

pytestmark = pytest.mark.privileged

ENTRY = IPv4Address("10.99.0.1")
BACKENDS = {"a1": "10.99.1.1", "a2": "10.99.1.2", "b1": "10.99.2.1"}
REQUESTS = 400

CLIENT = """
import json, sys, urllib.request
counts = {}
for _ in range(int(sys.argv[2])):
    with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
        name = answer.read().decode().strip()
    counts[name] = counts.get(name, 0) + 1
print(json.dumps(counts))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"brt-{os.getpid()}-{secrets.token_hex(2)}"
    create_netns(name)
    try:
        for address in (ENTRY, *BACKENDS.values()):
            subprocess.run(
                ["ip", "-n", name, "addr", "add", f"{address}/32", "dev", "lo"], check=True
            )
        yield name
    finally:
        remove_netns(name)


def in_ns(netns: str, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


@pytest.fixture
def backends(netns: str, launcher: ProcessLauncher, tmp_path: Path) -> None:
    for name, address in BACKENDS.items():
        root = tmp_path / name
        root.mkdir()
        (root / "who").write_text(name)
        launcher.start(
            in_ns(
                netns,
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    "--bind",
                    address,
                    "--directory",
                    str(root),
                    "8080",
                ],
            ),
            name=name,
        )
    probe = "import socket,sys\nfor a in sys.argv[1:]:\n  socket.create_connection((a, 8080), 5).close()"
    for _ in range(100):
        done = subprocess.run(in_ns(netns, [sys.executable, "-c", probe, *BACKENDS.values()]),
                              capture_output=True, check=False)  # fmt: skip
        if done.returncode == 0:
            return
    raise AssertionError("the backends never listened")


def traffic(netns: str, requests: int = REQUESTS) -> dict[str, int]:
    out = subprocess.run(
        in_ns(netns, [sys.executable, "-c", CLIENT, f"http://{ENTRY}:80/who", str(requests)]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    counts: dict[str, int] = json.loads(out.stdout)
    return counts


def entry(weight_a: int, weight_b: int, *, sticky: bool = False) -> RouterEntry:
    a = tuple(Backend(IPv4Address(BACKENDS[n])) for n in ("a1", "a2"))
    b = (Backend(IPv4Address(BACKENDS["b1"])),)
    return RouterEntry(
        "demo", "prod", ENTRY, 80, 8080, (Pool(1, weight_a, a), Pool(2, weight_b, b)), sticky=sticky
    )


@pytest.mark.usefixtures("backends")
# "nft": in-process through libnftables; a path: the nft command (the fallback)
@pytest.mark.parametrize("nft", ["nft", shutil.which("nft") or "/usr/sbin/nft"])
def test_connections_split_by_weight_and_counters_carry_over(netns: str, nft: str) -> None:
    router = NftRouter(netns=netns, nft=nft)
    router.apply(entry(80, 20))
    counts = traffic(netns)
    assert sum(counts.values()) == REQUESTS
    share_b = counts.get("b1", 0) / REQUESTS
    assert 0.12 <= share_b <= 0.28, counts
    # both instances of release 1 take part
    assert counts.get("a1", 0) > 0
    assert counts.get("a2", 0) > 0
    connections = router.connections("demo", "prod")
    assert connections[1][0] == counts["a1"] + counts["a2"]
    assert connections[2][0] == counts["b1"]

    router.apply(entry(0, 100))
    assert traffic(netns, 50) == {"b1": 50}
    after = router.connections("demo", "prod")
    assert after[1][0] == connections[1][0]
    assert after[2][0] == connections[2][0] + 50

    router.remove("demo", "prod")
    router.remove("demo", "prod")
    assert router.connections("demo", "prod") == {}


@pytest.mark.usefixtures("backends")
def test_sticky_keeps_one_client_on_one_instance(netns: str) -> None:
    NftRouter(netns=netns).apply(entry(50, 50, sticky=True))
    counts = traffic(netns, 40)
    assert len(counts) == 1, counts
