"""Placement: spreading, labels, lost hosts, ids, and depends_on ordering."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.rollout.errors import PlacementError
from pipeline.rollout.placement import (
    HostCapacity,
    Instance,
    instance_id,
    parse_instance_id,
    plan_instances,
    start_order,
)

pytestmark = pytest.mark.unit

GiB = 1 << 30


def hosts(n: int, **labels: str) -> list[HostCapacity]:
    return [HostCapacity(f"h{i}", dict(labels), free_memory=GiB) for i in range(1, n + 1)]


def test_one_instance_per_host_before_two_on_any() -> None:
    plan = plan_instances("web", "prod", 3, 7, hosts(5), ())
    per_host = Counter(i.host for i in plan.start)
    assert sorted(per_host.values()) == [1, 1, 1, 2, 2]
    assert len({i.id for i in plan.start}) == 7
    assert plan.stop == ()


def test_the_second_round_goes_to_the_hosts_with_most_free_memory() -> None:
    pool = [
        HostCapacity("a", free_memory=1 * GiB),
        HostCapacity("b", free_memory=4 * GiB),
        HostCapacity("c", free_memory=2 * GiB),
    ]
    plan = plan_instances("web", "prod", 1, 4, pool, ())
    assert [i.host for i in plan.start] == ["b", "c", "a", "b"]


def test_other_releases_count_when_spreading() -> None:
    stable = [Instance(instance_id("web", "prod", 1, s), "h1", 1) for s in range(2)]
    plan = plan_instances("web", "prod", 2, 1, hosts(2), (), neighbours=stable)
    assert [i.host for i in plan.start] == ["h2"]


def test_host_labels_are_honoured() -> None:
    pool = [*hosts(2, zone="a"), HostCapacity("z1", {"zone": "b"}, GiB)]
    plan = plan_instances("web", "prod", 1, 4, pool, (), selector={"zone": "b"})
    assert {i.host for i in plan.start} == {"z1"}
    with pytest.raises(PlacementError, match=r"no host can run release 1: .*\{'zone': 'c'\}"):
        plan_instances("web", "prod", 1, 1, pool, (), selector={"zone": "c"})


def test_instances_on_a_lost_host_are_placed_elsewhere() -> None:
    running = plan_instances("web", "prod", 1, 3, hosts(3), ()).start
    pool = [h if h.name != "h2" else HostCapacity("h2", {}, GiB, alive=False) for h in hosts(4)]
    plan = plan_instances("web", "prod", 1, 3, pool, running)
    assert [i.host for i in plan.stop] == ["h2"]
    assert [i.host for i in plan.start] == ["h4"]
    assert plan.start[0].id not in {i.id for i in running}
    assert len(plan.keep) == 2


def test_excluded_hosts_are_avoided_and_existing_instances_kept() -> None:
    running = plan_instances("web", "prod", 1, 2, hosts(3), ()).start
    plan = plan_instances("web", "prod", 1, 2, hosts(3), running, exclude_hosts=["h1"])
    assert {i.host for i in plan.keep} == {"h2"}
    assert [i.host for i in plan.start] == ["h3"]


def test_scaling_down_stops_from_the_most_crowded_host_first() -> None:
    running = plan_instances("web", "prod", 1, 5, hosts(3), ()).start
    plan = plan_instances("web", "prod", 1, 3, hosts(3), running)
    assert plan.start == ()
    assert sorted(Counter(i.host for i in plan.keep).values()) == [1, 1, 1]
    assert len(plan.stop) == 2


def test_asking_again_changes_nothing() -> None:
    running = plan_instances("web", "prod", 1, 4, hosts(3), ()).start
    plan = plan_instances("web", "prod", 1, 4, hosts(3), running)
    assert (plan.start, plan.stop) == ((), ())


def test_memory_limits_what_a_host_takes() -> None:
    pool = [HostCapacity("a", free_memory=GiB), HostCapacity("b", free_memory=GiB // 2)]
    plan = plan_instances("web", "prod", 1, 2, pool, (), memory=GiB // 2)
    assert sorted(i.host for i in plan.start) == ["a", "b"]
    with pytest.raises(PlacementError, match="no host has 536870912 bytes of memory free"):
        plan_instances("web", "prod", 1, 4, pool, (), memory=GiB // 2)


def test_instance_ids_are_hostname_labels_and_parse_back() -> None:
    assert instance_id("web", "prod", 12, 0) == "web-prod-r12-0"
    assert parse_instance_id("web", "prod", "web-prod-r12-3") == (12, 3)
    assert parse_instance_id("web", "prod", "api-prod-r12-3") is None
    long = instance_id("a" * 40, "Pre_Prod" * 4, 123456, 7)
    assert len(long) <= 63
    assert long.endswith("-r123456-7")
    assert parse_instance_id("a" * 40, "Pre_Prod" * 4, long) == (123456, 7)


def test_start_order_puts_dependencies_first() -> None:
    order = start_order({"web": ["api", "redis"], "api": ["db"], "db": [], "worker": ["db"]})
    assert order == ["db", "api", "worker", "web"]


def test_a_dependency_cycle_is_named() -> None:
    with pytest.raises(PlacementError, match="cycle: api -> web -> api"):
        start_order({"web": ["api"], "api": ["web"], "db": []})
