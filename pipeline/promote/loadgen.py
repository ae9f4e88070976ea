"""The built-in load generator of the perf-test gate (async httpx).

A fixed number of workers (the concurrency) send GET requests to one URL, either a fixed
number of requests in all or for a fixed time, and measure every request's latency. The
report has the percentiles (nearest rank), the throughput and the error rate; a request
errs when it does not complete (timeout, refused connection) or answers 4xx/5xx.

:func:`check_thresholds` compares a report with an app spec's ``tests.perf`` (pure).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.appspec import PerfTests

__all__ = [
    "DEFAULT_DURATION",
    "MAX_REQUESTS",
    "LoadProfile",
    "LoadReport",
    "check_thresholds",
    "drive_load",
    "generate_load",
    "percentile",
    "profile_from_spec",
]

DEFAULT_DURATION = 30.0
MAX_REQUESTS = 1_000_000
"""A cap on any run, so a duration against a very fast server still ends bounded."""


@dataclass(frozen=True)
class LoadProfile:
    """What to send: ``requests`` in all, or for ``duration`` seconds, ``concurrency`` at
    a time; each request may take ``timeout`` seconds."""

    url: str
    concurrency: int = 8
    requests: int | None = None
    duration: float | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1 (got {self.concurrency})")
        if self.requests is not None and self.duration is not None:
            raise ValueError("give requests or duration, not both")
        if self.requests is not None and not 1 <= self.requests <= MAX_REQUESTS:
            raise ValueError(f"requests must be from 1 to {MAX_REQUESTS} (got {self.requests})")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be positive (got {self.duration})")


@dataclass(frozen=True)
class LoadReport:
    """What one load run measured; latencies in seconds."""

    url: str
    concurrency: int
    requests: int
    errors: int
    elapsed: float
    p50: float
    p95: float
    p99: float
    max: float
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        """The report as stored on the gate event and shown by ``berth gate logs``."""
        return {
            "url": self.url,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "elapsed_s": round(self.elapsed, 6),
            "rps": round(self.rps, 3),
            "latency_ms": {
                "p50": round(self.p50 * 1000, 3),
                "p95": round(self.p95 * 1000, 3),
                "p99": round(self.p99 * 1000, 3),
                "max": round(self.max * 1000, 3),
            },
            "statuses": dict(sorted(self.statuses.items())),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 < q <= 100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def profile_from_spec(url: str, perf: PerfTests) -> LoadProfile:
    """The load an app spec's ``tests.perf`` asks for, against ``url`` (base + path)."""
    target = url.rstrip("/") + perf.path
    if perf.requests is not None:
        return LoadProfile(target, perf.concurrency, requests=perf.requests)
    duration = perf.duration.total_seconds() if perf.duration is not None else DEFAULT_DURATION
    return LoadProfile(target, perf.concurrency, duration=duration)


async def drive_load(
    profile: LoadProfile, *, transport: httpx.AsyncBaseTransport | None = None
) -> LoadReport:
    """Send the profile's load and measure it."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    budget = profile.requests if profile.requests is not None else MAX_REQUESTS
    duration = profile.duration
    if profile.requests is None and duration is None:
        duration = DEFAULT_DURATION
    issued = 0
    limits = httpx.Limits(
        max_connections=profile.concurrency, max_keepalive_connections=profile.concurrency
    )
    async with httpx.AsyncClient(
        timeout=profile.timeout, limits=limits, transport=transport, follow_redirects=False
    ) as client:
        started = time.perf_counter()
        deadline = started + duration if duration is not None else math.inf

        async def worker() -> None:
            nonlocal issued, errors
            while issued < budget and time.perf_counter() < deadline:
                issued += 1
                sent = time.perf_counter()
                try:
                    response = await client.get(profile.url)
                    await response.aread()
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    errors += 1
                else:
                    statuses[str(response.status_code)] += 1
                    if response.status_code >= 400:
                        errors += 1
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(worker() for _ in range(profile.concurrency)))
        elapsed = time.perf_counter() - started
    return LoadReport(
        url=profile.url,
        concurrency=profile.concurrency,
        requests=len(latencies),
        errors=errors,
        elapsed=elapsed,
        p50=percentile(latencies, 50),
        p95=percentile(latencies, 95),
        p99=percentile(latencies, 99),
        max=max(latencies, default=0.0),
        statuses=dict(statuses),
    )


def generate_load(profile: LoadProfile) -> LoadReport:
    """:func:`drive_load` from synchronous code (a gate job's thread)."""
    return asyncio.run(drive_load(profile))


def check_thresholds(report: LoadReport, perf: PerfTests) -> list[str]:
    """Every threshold of ``perf`` the report misses, as a sentence each (empty: passed)."""
    problems: list[str] = []
    if report.requests == 0:
        return ["no request completed"]
    for name, limit, value in (
        ("p95", perf.max_p95_latency, report.p95),
        ("p99", perf.max_p99_latency, report.p99),
    ):
        if limit is not None and value > limit.total_seconds():
            problems.append(
                f"{name} latency {value * 1000:.1f} ms is above the limit "
                f"{limit.total_seconds() * 1000:.1f} ms"
            )
    if perf.max_error_rate is not None:
        allowed = perf.max_error_rate.fraction
        if report.error_rate > allowed:
            problems.append(
                f"error rate {report.error_rate:.2%} ({report.errors} of {report.requests}) "
                f"is above the limit {allowed:.2%}"
            )
    if perf.min_rps is not None and report.rps < perf.min_rps:
        problems.append(f"throughput {report.rps:.1f} req/s is below the minimum {perf.min_rps:g}")
    return problems
