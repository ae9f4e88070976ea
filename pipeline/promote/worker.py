"""Running gate jobs in the background: :class:`GateWorker`.

One thread takes jobs from a queue and runs them through the service; a result that
asks to be retried (``errored``, not terminal) is queued again after its
``retry_after``, at most ``max_attempts`` times. On start it queues what the store says
is owed (:meth:`~pipeline.promote.service.PromotionService.pending_gates`), which is how
gate runs survive a restart of the control plane.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from pipeline.errors import BerthError
from pipeline.logs import get_logger
from pipeline.promote.gates import GateResult
from pipeline.promote.service import GateJob
from runners.errors import RunnerError

__all__ = ["GateWorker"]

log = get_logger("promote.gates")


class GateWorker:
    """A background thread running gate jobs (see the module docstring)."""

    def __init__(
        self,
        run: Callable[[GateJob], GateResult],
        *,
        max_attempts: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._max_attempts = max_attempts
        self._clock = clock
        self._queue: list[tuple[float, int, GateJob]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.finished: list[tuple[GateJob, GateResult]] = []
        """Jobs done and their results, newest last (for status and tests)."""

    def submit(self, job: GateJob, *, delay: float = 0.0) -> None:
        """Queue ``job`` to run after ``delay`` seconds."""
        with self._cond:
            heapq.heappush(self._queue, (self._clock() + delay, next(self._order), job))
            self._cond.notify()

    def start(self, owed: list[GateJob] | None = None) -> None:
        """Start the thread, first queueing ``owed`` jobs (from ``pending_gates``)."""
        for job in owed or []:
            self.submit(job)
        self._thread = threading.Thread(target=self._loop, name="berth-gates", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the running job (if any); queued jobs stay owed in the store."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._cond:
            return not self._queue and not self._busy

    _busy = False

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._queue or self._queue[0][0] > self._clock()):
                    wait = self._queue[0][0] - self._clock() if self._queue else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                _, _, job = heapq.heappop(self._queue)
                self._busy = True
            try:
                result = self._run(job)
            except (BerthError, RunnerError) as exc:
                log.warning(
                    "gate job failed", extra={"fields": {"job": str(job), "error": str(exc)}}
                )
                with self._cond:
                    self._busy = False
                continue
            with self._cond:
                self.finished.append((job, result))
                self._busy = False
            if result.retryable and job.attempt < self._max_attempts:
                delay = result.retry_after.total_seconds() if result.retry_after else 30.0
                self.submit(replace(job, attempt=job.attempt + 1), delay=delay)
