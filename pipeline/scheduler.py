"""APScheduler inside ``berth serve``: git polls and housekeeping.

One interval job per app polls its branch at the app's ``poll_interval`` with jitter (so
many apps do not hit one git host in the same second). A poll asks the remote with
``ls-remote`` only; it queues a build when the head is a commit without one, and leaves
the fetch to the build. A daily job forgets webhook delivery ids older than a week
(providers stop redelivering long before).
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Mapping

from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.errors import BerthError
from pipeline.logs import get_logger
from pipeline.metrics import Metrics
from pipeline.queue.service import BuildService
from pipeline.store import system_source

log = get_logger("scheduler")

POLL_SOURCE = system_source("poller")
DELIVERY_RETENTION = datetime.timedelta(days=7)


def poll_app(service: BuildService, app: str, metrics: Metrics | None = None) -> str:
    """Poll ``app`` once; return the result: ``unchanged``, ``queued``, ``absent`` or
    ``error`` (the error is logged, the next poll tries again)."""
    try:
        head = service.branch_head(app)
        if head is None:
            result = "absent"
        elif service.store.find_build(app, head) is not None:
            result = "unchanged"
        else:
            queued = service.submit(
                app, head, actor="berth", source=POLL_SOURCE, detail={"trigger": "poll"}
            )
            result = "queued" if queued is not None and queued.created else "unchanged"
    except BerthError as exc:
        log.warning("poll failed", extra={"fields": {"app": app, "error": str(exc)}})
        result = "error"
    if metrics is not None:
        metrics.polls.labels(app, result).inc()
    return result


class Scheduler:
    """The background scheduler of one control plane."""

    def __init__(
        self,
        service: BuildService,
        intervals: Mapping[str, datetime.timedelta],
        *,
        metrics: Metrics | None = None,
        jitter: float = 0.1,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._service = service
        self._intervals = dict(intervals)
        self._metrics = metrics
        self._jitter = jitter
        self._now = now
        self._scheduler = BackgroundScheduler(timezone=datetime.UTC)

    def start(self) -> None:
        """Add the jobs and start; the first poll of each app happens within a second
        or two (spread), then every interval."""
        for app, interval in self._intervals.items():
            seconds = interval.total_seconds()
            first = self._now() + datetime.timedelta(seconds=random.uniform(0.1, 1.0))  # noqa: S311
            self._scheduler.add_job(
                poll_app,
                "interval",
                args=(self._service, app, self._metrics),
                seconds=seconds,
                jitter=max(0.0, seconds * self._jitter),
                id=f"poll:{app}",
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(seconds)),
            )
        self._scheduler.add_job(
            self._forget_deliveries,
            "interval",
            hours=24,
            id="forget-deliveries",
            next_run_time=self._now() + datetime.timedelta(minutes=1),
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()

    def stop(self) -> None:
        """Stop; a poll in progress finishes first."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _forget_deliveries(self) -> None:
        self._service.store.forget_deliveries(self._now() - DELIVERY_RETENTION)
