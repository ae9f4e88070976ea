"""Analysis measurements: how a release's instances answer, measured over HTTP.

The router's kernel counters see connections, not HTTP statuses, so an analysis step
measures the canary directly: :class:`HttpProber` sends ``GET`` requests to each of its
healthy instances, and :func:`measure` turns the samples (plus the health-probe results
the agents report) into a :class:`~pipeline.rollout.events.Measurement`: the error rate
(connection failures, time-outs and 5xx answers), the p99 latency and the share of
instances whose health probe passes. :class:`Analyser` decides when a measurement is
due (every ``interval`` of the step) and builds the
:class:`~pipeline.rollout.events.AnalysisResult`, whose id makes a repeated delivery a
no-op.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address
from typing import Protocol

import httpx

from pipeline.rollout.events import AnalysisResult, Measurement
from pipeline.rollout.instances import ObservedInstance
from pipeline.rollout.model import Analysis, RolloutState

__all__ = ["Analyser", "HttpProber", "Prober", "Sample", "measure"]


@dataclass(frozen=True)
class Sample:
    """One request: whether it succeeded, and how long it took (seconds)."""

    ok: bool
    latency: float


class Prober(Protocol):
    """Sends requests to instances and reports each outcome."""

    def probe(
        self, targets: Sequence[tuple[IPv4Address, int]], path: str, count: int
    ) -> list[Sample]:
        """``count`` requests spread over ``targets``."""
        ...


class HttpProber:
    """:class:`Prober` over HTTP/1.1 with httpx, a new connection per request."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout

    def probe(
        self, targets: Sequence[tuple[IPv4Address, int]], path: str, count: int
    ) -> list[Sample]:
        samples: list[Sample] = []
        if not targets:
            return samples
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=self.timeout, limits=limits, trust_env=False) as client:
            for index in range(count):
                address, port = targets[index % len(targets)]
                began = time.monotonic()
                try:
                    response = client.get(f"http://{address}:{port}{path}")
                    ok = response.status_code < 500
                except httpx.HTTPError:
                    ok = False
                samples.append(Sample(ok, time.monotonic() - began))
        return samples


def measure(samples: Sequence[Sample], instances: Sequence[ObservedInstance]) -> Measurement:
    """The measurement of ``samples`` and of the health of ``instances`` (pure)."""
    running = [i for i in instances if i.running or i.failed]
    health = sum(i.healthy for i in running) / len(running) if running else None
    if not samples:
        return Measurement(requests=0, health_success=health)
    errors = sum(not s.ok for s in samples)
    latencies = sorted(s.latency for s in samples)
    p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)]
    return Measurement(
        requests=len(samples),
        error_rate=errors / len(samples),
        p99_latency=timedelta(seconds=p99),
        health_success=health,
    )


class Analyser:
    """Takes the measurements the analysis steps of running rollouts are due."""

    def __init__(
        self,
        prober: Prober | None = None,
        *,
        requests: int = 20,
        path: str = "/",
    ) -> None:
        self.prober = prober or HttpProber()
        self.requests = requests
        self.path = path
        self._last: dict[tuple[int, int], datetime] = {}
        self._lock = threading.Lock()

    def due(
        self,
        rollout_id: int,
        state: RolloutState,
        instances: Sequence[ObservedInstance],
        port: int | None,
        now: datetime,
    ) -> AnalysisResult | None:
        """A measurement of the canary when its analysis step wants one now, else None."""
        progress, step = state.analysis, state.current_step
        if progress is None or not isinstance(step, Analysis) or state.canary is None:
            return None
        key = (rollout_id, progress.step_index)
        with self._lock:
            last = self._last.get(key)
            # the last measurement of a window may arrive exactly at its end
            if last is not None and now - last < step.interval and now < progress.ends_at:
                return None
            if now > progress.ends_at:
                return None
            self._last[key] = now
        canary = [i for i in instances if i.release == state.canary]
        targets = [
            (i.address, port) for i in canary if i.healthy and i.address is not None and port
        ]
        samples = self.prober.probe(targets, self.path, self.requests) if targets else []
        return AnalysisResult(
            id=f"analysis-{rollout_id}-{progress.step_index}-{progress.measurements}",
            step_index=progress.step_index,
            at=now,
            measurement=measure(samples, canary),
        )

    def forget(self, rollout_id: int) -> None:
        with self._lock:
            for key in [k for k in self._last if k[0] == rollout_id]:
                del self._last[key]
