"""The control plane's Prometheus metrics, in a registry of their own (no globals).

``/metrics`` serves :attr:`Metrics.registry`. The queue depth is read from the store at
scrape time, so it is right after a restart and across control-plane replicas.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# Builds take seconds to many minutes.
_BUILD_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


class Metrics:
    """Every metric ``berth serve`` exports."""

    def __init__(self, version: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        Info("berth", "berth's version", registry=self.registry).info({"version": version})
        self.store_up = Gauge(
            "berth_store_up", "1 when the state store answers", registry=self.registry
        )
        self.webhooks = Counter(
            "berth_webhooks",
            "Webhook deliveries by provider and result (queued, duplicate, ignored, "
            "pong, unauthorized, unknown_repo, bad_request, too_large, unsupported_media)",
            ["provider", "result"],
            registry=self.registry,
        )
        self.builds = Counter(
            "berth_builds",
            "Finished builds by result (succeeded, failed, cancelled, skipped, interrupted)",
            ["result"],
            registry=self.registry,
        )
        self.build_seconds = Histogram(
            "berth_build_duration_seconds",
            "Time from a build's start to its end, by result",
            ["result"],
            buckets=_BUILD_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "berth_build_queue_depth", "Builds waiting for a worker", registry=self.registry
        )
        self.running = Gauge(
            "berth_builds_running", "Builds running in this process", registry=self.registry
        )
        self.polls = Counter(
            "berth_polls",
            "Branch polls by app and result (unchanged, queued, error)",
            ["app", "result"],
            registry=self.registry,
        )

    def set_queue_depth_source(self, count: Callable[[], int]) -> None:
        """Read the queue depth from ``count`` at every scrape."""
        self.queue_depth.set_function(lambda: float(count()))
