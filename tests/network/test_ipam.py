from __future__ import annotations

import json
import multiprocessing
import threading
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from runners.errors import NetworkError
from runners.network import AddressesExhausted, InvalidNetworkInput, Ipam, IpamState, parse_subnet

pytestmark = pytest.mark.unit


def test_pure_state_allocates_after_gateway_round_robin() -> None:
    state = IpamState(IPv4Network("10.9.0.0/29"))  # .1 gateway, .2-.6 usable
    assert state.capacity == 5
    state, a = state.allocate("a")
    state, b = state.allocate("b")
    assert (a, b) == (IPv4Address("10.9.0.2"), IPv4Address("10.9.0.3"))
    again, same = state.allocate("a")
    assert same == a
    assert again == state
    state, released = state.release("a")
    assert released == a
    state, c = state.allocate("c")
    # the just-released .2 is not handed out again while later addresses are free
    assert c == IPv4Address("10.9.0.4")


def test_pure_state_exhaustion_and_wraparound() -> None:
    state = IpamState(IPv4Network("10.9.0.0/29"))
    for owner in "abcde":
        state, _ = state.allocate(owner)
    with pytest.raises(AddressesExhausted, match=r"10\.9\.0\.0/29: all 5 container addresses"):
        state.allocate("f")
    state, freed = state.release("b")
    state, f = state.allocate("f")
    assert f == freed == IPv4Address("10.9.0.3")


def test_allocations_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    first = Ipam(path, "10.9.1.0/24")
    addresses = [first.allocate(f"c{i}") for i in range(3)]
    restarted = Ipam(path, "10.9.1.0/24")
    assert restarted.lookup("c1") == addresses[1]
    fresh = restarted.allocate("c3")
    assert fresh not in addresses
    assert restarted.release("c0") == addresses[0]
    assert Ipam(path, "10.9.1.0/24").allocate("c4") not in {*addresses, fresh}
    data = json.loads(path.read_text())
    assert data["subnet"] == "10.9.1.0/24"
    assert sorted(data["allocations"]) == ["c1", "c2", "c3", "c4"]
    assert not list(tmp_path.glob(".*tmp"))


def test_subnet_change_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    Ipam(path, "10.9.1.0/24").allocate("a")
    with pytest.raises(NetworkError, match=r"not 10\.9\.2\.0/24"):
        Ipam(path, "10.9.2.0/24").allocate("b")


def test_corrupt_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    path.write_text("{not json")
    with pytest.raises(NetworkError, match="corrupt IPAM file"):
        Ipam(path, "10.9.1.0/24").allocate("a")


def test_concurrent_threads_get_distinct_addresses(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    results: list[IPv4Address] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        ipam = Ipam(path, "10.9.3.0/24")
        for i in range(10):
            address = ipam.allocate(f"t{worker}-{i}")
            with lock:
                results.append(address)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 80
    assert len(set(results)) == 80
    assert len(Ipam(path, "10.9.3.0/24").allocations()) == 80


def _allocate_in_process(path: str, worker: int, count: int) -> None:
    ipam = Ipam(Path(path), "10.9.4.0/24")
    for i in range(count):
        ipam.allocate(f"p{worker}-{i}")


def test_concurrent_processes_get_distinct_addresses(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_allocate_in_process, args=(str(path), w, 15)) for w in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    allocations = Ipam(path, "10.9.4.0/24").allocations()
    assert len(allocations) == 60
    assert len(set(allocations.values())) == 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/33", "not an IPv4 network"),
        ("10.0.0.1/24", "not an IPv4 network"),
        ("banana", "not an IPv4 network"),
        ("10.0.0.0", "give a prefix length"),
        ("10.0.0.0/31", "too small"),
    ],
)
def test_bad_subnets(text: str, message: str) -> None:
    with pytest.raises(InvalidNetworkInput, match=message):
        parse_subnet(text)
