from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.appspec import load_appspec, parse_appspec
from pipeline.errors import ConfigError
from pipeline.rolloutspec import Pause, SetWeight
from pipeline.settings import parse_settings
from pipeline.units import Percent

pytestmark = pytest.mark.unit


def problems_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_appspec(text, "berth.yml", **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def test_an_empty_mapping_is_a_valid_spec_with_defaults() -> None:
    spec = parse_appspec("build: {}\n")
    assert spec.build.dockerfile == "Dockerfile"
    assert spec.build.context == "."
    assert spec.run.health is None
    assert spec.run.resources.memory is None
    assert spec.tests.functional is None
    assert spec.rollout is None


def test_a_full_spec_parses_into_typed_objects() -> None:
    spec = parse_appspec(
        """
build: {dockerfile: docker/Dockerfile, context: src, args: {V: 3}, target: prod}
run:
  port: 8080
  command: [./serve, --fast]
  health: {http: /healthz, interval: 5s, timeout: 1s, start_period: 10s}
  resources: {memory: 256Mi, cpu: 250m, pids: 64}
  replicas: {prod: 3}
  variables: {prod: {LOG_LEVEL: warn}}
  depends_on: [db]
tests:
  functional: {command: [pytest, -q]}
  perf: {requests: 500, concurrency: 4, max_p95_latency: 100ms, max_error_rate: 0.5%, min_rps: 20}
rollout:
  steps: [{set_weight: 25}, {pause: 30s}, {set_weight: 100}]
"""
    )
    assert spec.build.args == {"V": "3"}
    assert spec.run.command == ("./serve", "--fast")
    assert spec.run.health is not None
    assert spec.run.health.kind == "http"
    assert spec.run.health.start_period == timedelta(seconds=10)
    assert spec.run.resources.memory == 256 * 1024**2
    assert spec.run.resources.cpu == 0.25
    assert spec.run.replicas == {"prod": 3}
    assert spec.run.variables == {"prod": {"LOG_LEVEL": "warn"}}
    assert spec.tests.functional is not None
    assert spec.tests.functional.timeout == timedelta(minutes=10)
    assert spec.tests.perf is not None
    assert spec.tests.perf.max_error_rate == Percent(0.5)
    assert spec.tests.perf.min_rps == 20.0
    assert spec.rollout is not None
    assert spec.rollout.steps == (
        SetWeight(set_weight=25),
        Pause(pause=timedelta(seconds=30)),
        SetWeight(set_weight=100),
    )


BAD_SPECS = [
    pytest.param(
        "run:\n  port: 8080\n  health:\n    http: health\n",
        ['berth.yml: run/health/http: must start with "/" (got "health")'],
        id="health path without slash",
    ),
    pytest.param(
        "run: {port: 80, health: {http: /h, tcp: true}}\n",
        ["berth.yml: run/health: give exactly one probe: http, tcp or exec (got http, tcp)"],
        id="two probes",
    ),
    pytest.param(
        "run: {health: {tcp: true}}\n",
        ["berth.yml: run: a tcp health probe needs run/port"],
        id="tcp probe without port",
    ),
    pytest.param(
        "run: {port: 80, health: {http: /h, interval: 1s, timeout: 5s}}\n",
        ["berth.yml: run/health: timeout must not be longer than interval"],
        id="timeout above interval",
    ),
    pytest.param(
        "run: {resources: {memory: 512m}}\n",
        [
            'berth.yml: run/resources/memory: must be a size like 128Mi, 1Gi or 512M (got "512m"); '
            "suffixes are case-sensitive: k, M, G, T or Ki, Mi, Gi, Ti"
        ],
        id="bad size",
    ),
    pytest.param(
        "run: {resources: {memory: 64Ki}}\n",
        ['berth.yml: run/resources/memory: must be at least 1Mi (got "64Ki")'],
        id="size too small",
    ),
    pytest.param(
        "run: {port: 70000}\n",
        ["berth.yml: run/port: must be at most 65535 (got 70000)"],
        id="port out of range",
    ),
    pytest.param(
        "run: {replicas: {prod: -2}}\n",
        ["berth.yml: run/replicas/prod: must be at least 1 (got -2)"],
        id="negative replicas",
    ),
    pytest.param(
        "build: {dockerfile: ../../etc/passwd}\n",
        [
            "berth.yml: build/dockerfile: must be a path inside the repository, like "
            'docker/Dockerfile (got "../../etc/passwd")'
        ],
        id="dockerfile outside the repository",
    ),
    pytest.param(
        "run: {command: ./serve --fast}\n",
        ['berth.yml: run/command: must be a list (got "./serve --fast")'],
        id="command as a string",
    ),
    pytest.param(
        "tests: {functional: {command: [make, test], timeout: 10}}\n",
        [
            "berth.yml: tests/functional/timeout: must be a duration like 90s, 5m or 1h30m "
            "(got 10); add a unit, e.g. 10s"
        ],
        id="bad duration",
    ),
    pytest.param(
        "tests: {perf: {duration: 1m, requests: 100, min_rps: 5}}\n",
        ["berth.yml: tests/perf: give duration or requests, not both"],
        id="duration and requests",
    ),
    pytest.param(
        "tests: {perf: {concurrency: 4}}\n",
        [
            "berth.yml: tests/perf: name at least one threshold: max_p95_latency, "
            "max_p99_latency, max_error_rate or min_rps"
        ],
        id="perf without thresholds",
    ),
    pytest.param(
        "tests: {perf: {max_error_rate: 120%}}\n",
        ['berth.yml: tests/perf/max_error_rate: must be between 0% and 100% (got "120%")'],
        id="percentage out of range",
    ),
    pytest.param(
        "rollout: {steps: [{set_weight: 60}, {set_weight: 40}]}\n",
        [
            "berth.yml: rollout/steps/1/set_weight: must be more than the previous weight 60 "
            "(got 40); weights must increase step by step"
        ],
        id="weights not increasing",
    ),
    pytest.param(
        "rollout: {steps: [{pause: {seconds: 5}}]}\n",
        [
            'berth.yml: rollout/steps/0/pause: unknown key "seconds" in pause; write pause: 2m, '
            "pause: {duration: 2m} or pause: {} (wait for berth promote)"
        ],
        id="pause with an unknown key",
    ),
    pytest.param(
        "biuld: {}\nrun: {helth: {}}\n",
        [
            'berth.yml: biuld: unknown key (did you mean "build"?)',
            'berth.yml: run/helth: unknown key (did you mean "health"?)',
        ],
        id="unknown keys",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SPECS)
def test_bad_specs_are_reported_exactly(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def test_spec_checked_against_the_service_config() -> None:
    settings = parse_settings(
        "cluster: {hosts: 1}\napps: [{name: web, path: a}, {name: db, path: b}]\n",
        "etc/berth.yml",
    )
    problems = problems_of(
        "run:\n  replicas: {staging: 2, prod: 2}\n  variables: {qa: {}}\n  depends_on: [db, web, cache, db]\n",
        settings=settings,
        app="web",
    )
    assert problems == [
        'berth.yml: run/depends_on/3: lists "db" twice',
        'berth.yml: run/replicas/staging: no environment "staging" in etc/berth.yml '
        "(it has dev, functional-test, perf-test, pre-prod, prod)",
        'berth.yml: run/variables/qa: no environment "qa" in etc/berth.yml '
        "(it has dev, functional-test, perf-test, pre-prod, prod)",
        "berth.yml: run/depends_on/1: an app cannot depend on itself",
        'berth.yml: run/depends_on/2: no app "cache" in etc/berth.yml (it watches web, db)',
    ]


def test_load_appspec_from_a_file(tmp_path: Path) -> None:
    spec_file = tmp_path / "berth.yml"
    spec_file.write_text("run: {port: 8000, health: {exec: [true]}}\n")
    with pytest.raises(ConfigError) as caught:
        load_appspec(spec_file, source="repo/berth.yml")
    assert (
        str(caught.value)
        == "repo/berth.yml: run/health/exec/0: must be a string (got true); quote it"
    )
    spec_file.write_text("run: {port: 8000, health: {exec: ['true']}}\n")
    spec = load_appspec(spec_file)
    assert spec.run.health is not None
    assert spec.run.health.kind == "exec"
