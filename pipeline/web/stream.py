"""The live stream behind the page: server-sent events carrying changed sections.

Each open page holds one ``text/event-stream`` response. The stream polls the source's
event-log cursor (cheap); when the log moved, or every ``refresh`` seconds while a
rollout is in progress (weights change without new events), it renders the sections
and sends those whose HTML differs from what this page last received, as one
``snapshot`` event with a JSON body ``{"event_id": N, "rolling": bool, "sections":
{id: html}}``. The browser swaps the fragments in; the page never reloads.

Every stream is bounded: it ends after ``max_seconds`` (``EventSource`` reconnects by
itself after the ``retry`` delay) or ``max_events`` events, and at most ``max_streams``
run at once, so forgotten tabs cannot pile up work.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from starlette.concurrency import run_in_threadpool

from pipeline.web.sections import render_sections, when
from pipeline.web.source import DashboardSource

__all__ = ["StreamLimits", "StreamSlots", "snapshot_events"]


@dataclass(frozen=True)
class StreamLimits:
    """How often a stream looks and how long it lives (seconds)."""

    poll: float = 0.25
    refresh: float = 1.0
    keepalive: float = 15.0
    retry: float = 2.0
    max_seconds: float = 300.0
    max_events: int | None = None
    max_streams: int = 32


class StreamSlots:
    """Counts open streams so that no more than ``limit`` run at once."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._open >= self._limit:
                return False
            self._open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._open -= 1


def _event(name: str, data: object, event_id: int) -> str:
    # json.dumps never emits a raw newline, so the data fits on one "data:" line
    return f"event: {name}\nid: {event_id}\ndata: {json.dumps(data)}\n\n"


async def snapshot_events(
    source: DashboardSource, limits: StreamLimits, slots: StreamSlots
) -> AsyncIterator[str]:
    """The body of one stream (the caller has taken a slot; this gives it back)."""
    try:
        yield f"retry: {int(limits.retry * 1000)}\n\n"
        sent: dict[str, str] = {}
        started = time.monotonic()
        last_send = last_render = float("-inf")
        cursor: int | None = None
        rolling = False
        events = 0
        while time.monotonic() - started < limits.max_seconds:
            if limits.max_events is not None and events >= limits.max_events:
                break
            latest = await run_in_threadpool(source.latest_event_id)
            now = time.monotonic()
            if latest != cursor or (rolling and now - last_render >= limits.refresh):
                data = await run_in_threadpool(source.snapshot)
                last_render = now
                cursor, rolling = data.last_event_id, data.rolling
                sections = render_sections(data)
                changed = {k: v for k, v in sections.items() if sent.get(k) != v}
                sent.update(changed)
                payload = {
                    "event_id": cursor,
                    "rolling": rolling,
                    "updated": when(data.generated_at),
                    "sections": changed,
                }
                yield _event("snapshot", payload, cursor)
                events += 1
                last_send = now
            elif now - last_send >= limits.keepalive:
                yield ": keepalive\n\n"
                last_send = now
            await anyio.sleep(limits.poll)
    finally:
        slots.give_back()
