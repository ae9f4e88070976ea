"""The pure parts of the agent: spec parsing, health thresholds, back-off, listeners, CLI specs."""

from __future__ import annotations

import pytest

from pipeline.cli.containers import build_spec, parse_size
from runners.agent.containers import exec_command
from runners.agent.errors import BadSpec
from runners.agent.health import HEALTHY, STARTING, UNHEALTHY, HealthState, observe
from runners.agent.launch import resolve_runtime
from runners.agent.model import HealthCheck, RestartPolicy, parse_spec, spec_to_json
from runners.agent.restarts import restart_delay, should_restart
from runners.agent.server import Listener, ListenError

pytestmark = pytest.mark.unit

FULL = {
    "image": "127.0.0.1:5000/app:v1",
    "command": ["httpd", "-f"],
    "env": {"A": "1"},
    "ports": [{"host": 8080, "container": 80}],
    "resources": {"memory_bytes": 64 << 20, "cpus": 0.5, "pids": 100},
    "health": {"kind": "http", "port": 80, "path": "/up", "healthy_threshold": 2},
    "labels": {"app": "web"},
    "restart": {"policy": "on-failure", "max_retries": 3},
    "stop_timeout": 5,
}


def test_a_full_spec_round_trips_through_its_canonical_form() -> None:
    spec = parse_spec(FULL)
    assert spec.ports[0].protocol == "tcp"
    assert spec.health is not None
    assert spec.health.healthy_threshold == 2
    assert parse_spec(spec_to_json(spec)) == spec
    assert spec_to_json(parse_spec(spec_to_json(spec))) == spec_to_json(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"imagee": "x"}, "spec.imagee: unknown field"),
        ({"ports": [{"host": 1, "container": 2, "proto": "tcp"}]}, "spec.ports[0].proto: unknown"),
        ({"ports": [{"host": 0, "container": 2}]}, "spec.ports[0].host: must be an integer"),
        ({"ports": [{"host": 5, "container": 2}, {"host": 5, "container": 3}]}, "listed twice"),
        ({"resources": {"memory_bytes": 10}}, "spec.resources.memory_bytes"),
        ({"resources": {"cpus": True}}, "spec.resources.cpus"),
        ({"health": {"kind": "exec"}}, "spec.health.command: missing"),
        ({"health": {"kind": "grpc"}}, "spec.health.kind: must be one of"),
        ({"health": {"kind": "http", "port": 80, "path": "up"}}, "spec.health.path"),
        ({"restart": {"policy": "always"}}, "spec.restart.policy"),
        ({"env": {"1BAD": "x"}}, "spec.env.1BAD"),
        ({"image": "UPPER/case:tag!"}, "spec.image"),
        ({"digest": "sha256:abc"}, "spec.digest"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(BadSpec, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec({**FULL, **change})


def test_a_spec_must_be_an_object() -> None:
    with pytest.raises(BadSpec, match="spec: must be a JSON object"):
        parse_spec(["image"])


CHECK = HealthCheck(kind="tcp", port=80, healthy_threshold=2, unhealthy_threshold=2, start_period=5)


def test_health_needs_consecutive_results_and_forgives_the_start_period() -> None:
    state = observe(HealthState(), CHECK, False, "refused", since_start=1.0)
    assert state.status == STARTING
    assert state.failures == 0
    state = observe(state, CHECK, True, "", since_start=2.0)
    assert state.status == STARTING
    state = observe(state, CHECK, True, "", since_start=3.0)
    assert state.status == HEALTHY
    state = observe(state, CHECK, False, "refused", since_start=4.0)
    assert state.status == HEALTHY  # once healthy, failures count even in the start period
    state = observe(state, CHECK, False, "refused", since_start=4.5)
    assert state.status == UNHEALTHY
    assert state.last_error == "refused"
    assert observe(state, CHECK, True, "", since_start=9).status == UNHEALTHY
    assert state.probes == 5


def test_restart_policy_and_back_off() -> None:
    policy = RestartPolicy(policy="on-failure", max_retries=2, backoff=0.5, max_backoff=3.0)
    assert should_restart(policy, 1, 0)
    assert should_restart(policy, None, 1)
    assert not should_restart(policy, 0, 0)
    assert not should_restart(policy, 1, 2)
    assert not should_restart(RestartPolicy(), 1, 0)
    assert [restart_delay(policy, n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/berth.sock", Listener("unix", path="/run/berth.sock")),
        ("tcp://127.0.0.1:7420", Listener("tcp", host="127.0.0.1", port=7420)),
        ("tcp://[::1]:7420", Listener("tcp", host="::1", port=7420)),
    ],
)
def test_listen_addresses(text: str, expected: Listener) -> None:
    assert Listener.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["unix:relative", "tcp://host", "tcp://[::1]:99999", "http://x:1"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ListenError, match="listen address"):
        Listener.parse(text)


def test_berth_run_builds_the_spec_the_agent_parses() -> None:
    spec = build_spec(
        "127.0.0.1:5000/app:v1", ("sh", "-c", "true"), env=("A=1",), publish=("8080:80/udp",),
        memory="64m", cpus=0.5, restart="on-failure", stop_timeout=1.0,
    )  # fmt: skip
    parsed = parse_spec(spec)
    assert parsed.ports[0].protocol == "udp"
    assert parsed.ports[0].host == 8080
    assert parsed.resources.memory_bytes == 64 << 20
    assert parsed.restart.policy == "on-failure"
    assert parse_size("1g") == 1 << 30
    assert parse_size("512") == 512
    assert parse_size("4Mi") == 4 << 20


def test_exec_enters_every_namespace_of_the_process() -> None:
    assert exec_command(42, ["id"]) == [
        "nsenter", "--target", "42", "--all", "--root", "--wd", "--", "id",
    ]  # fmt: skip


def test_auto_runtime_is_crun_where_installed() -> None:
    assert resolve_runtime("auto", which=lambda name: f"/usr/bin/{name}") == "crun"
    assert resolve_runtime("auto", which=lambda name: None) == "runc"
    assert resolve_runtime("runc", which=lambda name: f"/usr/bin/{name}") == "runc"
    assert resolve_runtime("crun", which=lambda name: None) == "crun"
