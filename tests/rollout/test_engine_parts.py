"""The engine's pure parts: instance specs, observations, measurements, entry addresses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from pipeline.appspec import parse_appspec
from pipeline.rollout.analysis import Sample, measure
from pipeline.rollout.engine import event_action
from pipeline.rollout.entry import EntryAddresses
from pipeline.rollout.instances import (
    ObservedInstance,
    instance_spec,
    observation,
    observed_instances,
)
from pipeline.rollout.model import ReleaseHealth
from runners.agent.model import parse_spec, spec_to_json

pytestmark = pytest.mark.unit

SPEC = parse_appspec(
    """
run:
  port: 8080
  command: [httpd, -f]
  health: {http: /health, interval: 1s, timeout: 500ms, start_period: 2s}
  resources: {memory: 64Mi}
  variables:
    prod: {MODE: fast}
"""
)


def test_instance_spec_is_an_agent_spec_with_labels_and_variables() -> None:
    doc = instance_spec(
        "web", "prod", 7, image="reg:5000/web@sha256:" + "a" * 64, spec=SPEC,
        variables={"MODE": "slow", "REGION": "eu"},
    )  # fmt: skip
    parsed = parse_spec(doc)
    assert spec_to_json(parsed)["env"] == {"MODE": "fast", "REGION": "eu"}
    assert parsed.labels == {"berth.app": "web", "berth.env": "prod", "berth.release": "7"}
    assert parsed.health is not None
    assert (parsed.health.kind, parsed.health.port, parsed.health.path) == ("http", 8080, "/health")
    assert parsed.health.start_period == 2.0
    assert parsed.resources.memory_bytes == 64 << 20
    assert parsed.command == ("httpd", "-f")
    assert parsed.restart.policy == "no"


def test_observation_counts_per_release_and_ignores_other_environments() -> None:
    def item(i: str, env: str, release: str, state: str, health: str) -> dict[str, Any]:
        labels = {"berth.app": "web", "berth.env": env, "berth.release": release}
        return {"id": i, "labels": labels, "state": state, "health": health, "address": "10.0.0.2"}

    inventories: dict[str, list[dict[str, Any]]] = {
        "h1": [item("a", "prod", "1", "running", "healthy"), item("b", "dev", "1", "running", "healthy")],
        "h2": [item("c", "prod", "2", "running", "starting"), item("d", "prod", "2", "exited", "none")],
        "h3": [item("e", "prod", "2", "running", "unhealthy"), {"id": "x", "labels": {}}],
    }  # fmt: skip
    found = observed_instances("web", "prod", inventories)
    assert [i.id for i in found] == ["a", "c", "d", "e"]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    seen = observation(at, found)
    assert seen.of(1) == ReleaseHealth(1, running=1, healthy=1, failed=0)
    assert seen.of(2) == ReleaseHealth(2, running=2, healthy=0, failed=2)


def test_measure_error_rate_p99_and_health() -> None:
    samples = [Sample(True, 0.010)] * 98 + [Sample(False, 0.5), Sample(True, 0.2)]
    instances = [
        ObservedInstance("a", "h1", 2, "running", "healthy", IPv4Address("10.0.0.2")),
        ObservedInstance("b", "h2", 2, "running", "unhealthy", IPv4Address("10.0.0.3")),
    ]
    result = measure(samples, instances)
    assert result.requests == 100
    assert result.error_rate == pytest.approx(0.01)
    assert result.p99_latency == timedelta(seconds=0.2)
    assert result.health_success == pytest.approx(0.5)
    empty = measure([], [])
    assert (empty.requests, empty.error_rate, empty.health_success) == (0, None, None)


def test_entry_addresses_are_allocated_from_the_top_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "entries.json"
    pool = IPv4Network("10.9.0.0/29")
    entries = EntryAddresses(path, pool, reserved=[IPv4Address("10.9.0.6")])
    assert entries.address("web", "prod") == IPv4Address("10.9.0.5")
    assert entries.address("web", "dev") == IPv4Address("10.9.0.4")
    again = EntryAddresses(path, pool, reserved=[IPv4Address("10.9.0.6")])
    assert again.address("web", "prod") == IPv4Address("10.9.0.5")
    assert again.known() == {
        ("web", "prod"): IPv4Address("10.9.0.5"),
        ("web", "dev"): IPv4Address("10.9.0.4"),
    }


def test_audit_names_promotion_reads() -> None:
    assert event_action("rollout_started") == "rollout.started"
    assert event_action("weight_set") == "rollout.step"
    assert event_action("rollout_completed") == "rollout.finished"
    assert event_action("rollout_aborted") == "rollout.aborted"
    assert event_action("rolled_back") == "rollout.rolled_back"
    assert event_action("host_lost") == "rollout.host_lost"
