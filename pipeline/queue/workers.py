"""The build queue's workers: bounded concurrency, cancel, recovery after a crash.

The queue itself lives in the store (builds in state ``queued``); workers claim the
oldest one atomically (``claim_next_build``), so a build is never run twice at once
even with several processes. On start, :meth:`BuildWorkers.recover` turns builds a
previous life of the control plane left running into ``interrupted`` and queues them
again, up to ``max_retries`` times each; a build that keeps dying with its control plane
stays ``interrupted`` with a reason saying so.

On stop, workers take nothing new; running builds get ``graceful`` seconds to finish,
then are marked interrupted (and retried on the next start).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.logs import get_logger
from pipeline.metrics import Metrics
from pipeline.queue.job import ACTOR, SOURCE, BuildJob, Outcome
from pipeline.store import Build, BuildState, ConflictError, NotFoundError, Store

log = get_logger("builds")

_IDLE_WAIT = 1.0  # seconds between looks at the store when nobody wakes the workers


@dataclass(frozen=True)
class WorkerSettings:
    """How many builds run at once and how interrupted ones are retried."""

    workers: int = max(1, os.cpu_count() or 1)
    max_retries: int = 2
    graceful: float = 30.0


class BuildWorkers:
    """Threads that claim queued builds from the store and run them."""

    def __init__(
        self,
        store: Store,
        job: BuildJob | Callable[[Build, threading.Event], Outcome],
        *,
        settings: WorkerSettings | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._run = job.run if isinstance(job, BuildJob) else job
        self.settings = settings or WorkerSettings()
        self._metrics = metrics
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    # --- life cycle ----------------------------------------------------------------

    def recover(self) -> list[Build]:
        """Interrupt what a previous life left running, queue interrupted builds again
        (bounded by ``max_retries``); return the builds queued again.

        Only for a control plane that owns the store alone (see the data-dir lock).
        """
        self._store.interrupt_running_builds(
            "the control plane stopped while this build ran (crash, kill or shutdown)"
        )
        requeued: list[Build] = []
        for build in self._store.list_builds(state=BuildState.INTERRUPTED, limit=1000):
            tries = self._retries(build)
            if tries >= self.settings.max_retries:
                continue
            try:
                with self._store.transaction() as tx:
                    again = tx.set_build_state(
                        build.id,
                        BuildState.QUEUED,
                        reason=f"retry {tries + 1} of {self.settings.max_retries}: {build.reason}",
                    )
                    tx.append_event(
                        ACTOR,
                        "build.retried",
                        source=SOURCE,
                        app=build.app,
                        detail={"build": build.id, "commit": build.commit, "retry": tries + 1},
                    )
            except ConflictError:
                continue
            requeued.append(again)
        return requeued

    def _retries(self, build: Build) -> int:
        events = self._store.list_events(app=build.app, action="build.retried", limit=1000)
        return sum(1 for e in events if e.detail.get("build") == build.id)

    def start(self) -> None:
        """Start the worker threads."""
        self._stopping.clear()
        for index in range(self.settings.workers):
            thread = threading.Thread(target=self._loop, name=f"berth-build-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, graceful: float | None = None) -> None:
        """Take no new builds; wait for running ones, then mark leftovers interrupted."""
        self._stopping.set()
        self.wake()
        wait = self.settings.graceful if graceful is None else graceful
        for thread in self._threads:
            thread.join(timeout=wait)
        if any(t.is_alive() for t in self._threads):
            left = self._store.interrupt_running_builds(
                "the control plane shut down before this build finished; it is retried on start",
                worker=self.worker_id,
            )
            with self._lock:
                for build in left:
                    if build.id in self._running:
                        self._running[build.id].set()
        self._threads = [t for t in self._threads if t.is_alive()]

    def wake(self) -> None:
        """Tell idle workers that something was queued."""
        with self._wake:
            self._wake.notify_all()

    # --- cancel --------------------------------------------------------------------

    def cancel(self, build_id: int, *, actor: str, source: str) -> Build:
        """Cancel a queued or running build; the state is written before the build is
        stopped. :class:`ConflictError` when it already finished."""
        build = self._store.get_build(build_id)
        if build.state.finished:
            raise ConflictError(
                f"build b-{build_id} ({build.app}@{build.commit[:12]}) already ended "
                f"({build.state}); nothing to cancel"
            )
        with self._store.transaction() as tx:
            cancelled = tx.set_build_state(build_id, BuildState.CANCELLED, reason=f"by {actor}")
            tx.append_event(
                actor,
                "build.cancelled",
                source=source,
                app=build.app,
                detail={"build": build_id, "commit": build.commit},
            )
        with self._lock:
            flag = self._running.get(build_id)
        if flag is not None:
            flag.set()
        return cancelled

    def running(self) -> list[int]:
        """Ids of the builds running in this process."""
        with self._lock:
            return sorted(self._running)

    # --- the loop ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                build = self._store.claim_next_build(self.worker_id)
            except Exception:
                log.exception("claiming a build failed; retrying")
                build = None
            if build is None:
                with self._wake:
                    self._wake.wait(_IDLE_WAIT)
                continue
            self._execute(build)

    def _execute(self, build: Build) -> None:
        flag = threading.Event()
        with self._lock:
            self._running[build.id] = flag
        if self._metrics:
            self._metrics.running.inc()
        try:
            outcome = self._run(build, flag)
        except NotFoundError:
            return
        finally:
            with self._lock:
                self._running.pop(build.id, None)
            if self._metrics:
                self._metrics.running.dec()
        if self._metrics and outcome.recorded:
            self._metrics.builds.labels(outcome.state.value).inc()
            self._metrics.build_seconds.labels(outcome.state.value).observe(outcome.seconds)
