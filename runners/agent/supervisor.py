"""The agent's background loop: notice ended runs, restart by policy, probe health.

One thread observes every instance each tick (or sooner when a request changed
something); probes run on a small pool so a slow one never delays the others. The
supervisor takes an instance's lock only when it is free, so a request never waits for
it, and it never holds a decision in memory that the next tick would not make again
from what it observes (level-triggered).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from runners.agent.agent import Agent, Tracked
from runners.agent.health import STARTING, HealthState, Prober, ProbeTarget, observe
from runners.agent.oom import oom_killed
from runners.agent.restarts import restart_delay, should_restart
from runners.errors import RunnerError
from runners.runtime.oci_runtime import ContainerState

_log = logging.getLogger(__name__)
SETTLE = 0.05  # seconds between a request's change and the tick that observes it


class Supervisor:
    """Runs :meth:`tick` every ``interval`` seconds in a thread until :meth:`stop`."""

    def __init__(self, agent: Agent, *, interval: float = 0.5, probe_workers: int = 8) -> None:
        self.agent = agent
        self.interval = interval
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=probe_workers, thread_name_prefix="probe")
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._prober = Prober(self._exec_probe)
        self._probe_owner = threading.local()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.agent.changed.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.is_set():
            if self.agent.changed.wait(wait):
                # a request changed something and is still answering: observing every
                # instance now would compete with it; a burst of requests is one tick
                self._stop.wait(SETTLE)
            self.agent.changed.clear()
            try:
                wait = min(self.interval, max(0.01, self.tick() - time.monotonic()))
            except Exception:
                _log.exception("supervisor tick failed; trying again next tick")
                wait = self.interval

    def tick(self) -> float:
        """Observe every instance once; restart and probe what is due.

        Returns the monotonic time something will next be due.
        """
        now = time.monotonic()
        due = now + self.interval
        for instance_id, tracked in list(self.agent.tracked.items()):
            status = self.agent.containers.status(instance_id)
            if status.state is ContainerState.STOPPED:
                self._ended(instance_id, tracked, status.exit_code, now)
                if tracked.exit_seen is not None:
                    delay = restart_delay(tracked.spec.restart, tracked.record.restarts)
                    due = min(due, tracked.exit_seen + delay)
            elif status.state is ContainerState.RUNNING:
                tracked.exit_seen = None
                self._maybe_probe(instance_id, tracked, status.pid, now)
                if tracked.spec.health is not None:
                    due = min(due, tracked.next_probe)
        return due

    def _ended(self, instance_id: str, tracked: Tracked, code: int | None, now: float) -> None:
        agent = self.agent
        if tracked.exit_seen is None:
            tracked.exit_seen = now
            oom = (
                code == 137
                and tracked.spec.resources.memory_bytes is not None
                and oom_killed(
                    agent.containers.cgroups_path(instance_id), tracked.record.run_started
                )
            )
            tracked.record = tracked.record.evolve(last_exit_code=code, oom_killed=oom)
            agent.records.put(tracked.record)
            if tracked.health is not None:
                tracked.health = HealthState()
        policy = tracked.spec.restart
        record = tracked.record
        if record.gave_up or not should_restart(policy, code, record.restarts):
            return
        if now < tracked.exit_seen + restart_delay(policy, record.restarts):
            return
        with agent.try_locked(instance_id) as got:
            if not got or agent.tracked.get(instance_id) is not tracked:
                return  # a request is working on it, or deleted it
            tracked.restarting = True
            try:
                tracked.record = record.evolve(
                    restarts=record.restarts + 1, run_started=time.monotonic()
                )
                agent.records.put(tracked.record)
                agent.containers.restart(instance_id)
                tracked.exit_seen = None
                tracked.next_probe = 0.0
            except RunnerError as exc:
                _log.warning("instance %s: restart failed: %s", instance_id, exc)
                tracked.exit_seen = time.monotonic()
                tracked.record = tracked.record.evolve(last_exit_code=None)
            finally:
                tracked.restarting = False

    def _maybe_probe(self, instance_id: str, tracked: Tracked, pid: int | None, now: float) -> None:
        check = tracked.spec.health
        if check is None or tracked.probing or now < tracked.next_probe:
            return
        tracked.probing = True
        interval = check.interval
        if tracked.health is not None and tracked.health.status == STARTING:
            # until first healthy, probe often: "healthy" is what a rollout waits for
            interval = min(interval, 0.1)
        tracked.next_probe = now + interval
        target = ProbeTarget(tracked.record.address, pid)
        started = tracked.record.run_started

        def probe() -> None:
            self._probe_owner.instance = instance_id
            try:
                ok, error = self._prober.probe(check, target)
                since = time.monotonic() - started
                state = tracked.health or HealthState()
                tracked.health = observe(state, check, ok, error, since_start=since)
            finally:
                tracked.probing = False

        self._pool.submit(probe)

    def _exec_probe(self, argv: list[str], timeout: float) -> tuple[int, str]:
        instance_id: str = self._probe_owner.instance
        result = self.agent.containers.exec(instance_id, argv, timeout)
        return result.code, result.stdout + result.stderr
