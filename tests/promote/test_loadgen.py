"""The load generator against a real Starlette app under uvicorn on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.appspec import PerfTests
from pipeline.promote.loadgen import (
    LoadProfile,
    LoadReport,
    check_thresholds,
    generate_load,
    percentile,
    profile_from_spec,
)
from tests.promote.support import Behaviour, serve_target

pytestmark = pytest.mark.integration


def test_counts_errors_and_measures_latency_with_a_request_budget() -> None:
    behaviour = Behaviour(delay=0.02, fail_every=4)
    with serve_target(behaviour) as url:
        report = generate_load(LoadProfile(url + "/", concurrency=4, requests=40))
    assert behaviour.count == 40
    assert (report.requests, report.errors) == (40, 10)
    assert report.error_rate == pytest.approx(0.25)
    assert report.statuses == {"200": 30, "500": 10}
    assert report.p50 >= 0.02
    assert report.p99 >= report.p95 >= report.p50
    assert report.rps > 0
    doc = report.to_json()
    assert doc["latency_ms"]["p50"] >= 20
    assert doc["requests"] == 40


def test_a_duration_run_stops_and_refused_connections_are_errors() -> None:
    with serve_target(Behaviour()) as url:
        pass  # the server is gone: every request is refused
    report = generate_load(LoadProfile(url + "/", concurrency=2, duration=0.3))
    assert report.requests > 0
    assert report.errors == report.requests
    assert set(report.statuses) == {"ConnectError"}


def test_profile_from_spec() -> None:
    perf = PerfTests.model_validate({"path": "/health", "requests": 50, "min_rps": 1.0})
    profile = profile_from_spec("http://127.0.0.1:9/", perf)
    assert (profile.url, profile.requests, profile.duration) == (
        "http://127.0.0.1:9/health",
        50,
        None,
    )
    timed = PerfTests.model_validate({"max_error_rate": "1%"})
    assert profile_from_spec("http://x", timed).duration == 30.0


@pytest.mark.unit
def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([], 95) == 0.0
    assert percentile([3.0], 99) == 3.0


@pytest.mark.unit
def test_thresholds_name_every_miss() -> None:
    report = LoadReport("u", 1, requests=100, errors=10, elapsed=10.0,
                        p50=0.1, p95=0.4, p99=0.9, max=1.0)  # fmt: skip
    perf = PerfTests.model_validate(
        {"max_p95_latency": "300ms", "max_p99_latency": "1s", "max_error_rate": "5%", "min_rps": 20}
    )
    problems = check_thresholds(report, perf)
    assert problems == [
        "p95 latency 400.0 ms is above the limit 300.0 ms",
        "error rate 10.00% (10 of 100) is above the limit 5.00%",
        "throughput 10.0 req/s is below the minimum 20",
    ]
    relaxed = perf.model_copy(update={"max_p95_latency": timedelta(seconds=1), "min_rps": 5.0})
    assert check_thresholds(report, relaxed) == [
        "error rate 10.00% (10 of 100) is above the limit 5.00%"
    ]
