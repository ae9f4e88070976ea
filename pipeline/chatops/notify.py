"""Posting to chat without blocking anyone: slash-command outcomes and notifications.

- :class:`Poster` sends JSON to a URL with bounded retries (a 5xx, 429 or a transport
  error is retried with back-off; a 4xx is final). Slash-command outcomes go to the
  request's ``response_url``; notifications to Slack/Mattermost-compatible incoming
  webhooks, which take the same ``{"text": ...}`` body.
- :class:`Notifier` owns a queue and one thread, so the engine that records an event
  never waits for a chat server.
- :class:`EventWatcher` reads new events from the store (a cursor on the append-only
  log) and hands the ones worth telling people about to the notifier;
  :func:`notification_text` says what each one reads like (pure).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.logs import get_logger
from pipeline.store import Event, Store

__all__ = [
    "NOTIFIED_ACTIONS",
    "EventWatcher",
    "NotificationTarget",
    "Notifier",
    "Poster",
    "notification_text",
]

log = get_logger("chatops.notify")


class Poster:
    """POSTs JSON with bounded retries (thread-safe; close it when done)."""

    def __init__(
        self,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def post(self, url: str, body: Mapping[str, Any]) -> bool:
        """Send ``body`` to ``url``; True when it was accepted (2xx)."""
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._client.post(url, json=dict(body))
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break
            if attempt < self._attempts:
                self._sleep(delay)
                delay *= 2
        # the URL may carry a webhook token: log only where it points
        where = httpx.URL(url).host
        log.warning("chat post failed", extra={"fields": {"host": where, "problem": problem}})
        return False

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class NotificationTarget:
    """An incoming-webhook URL and which events go there (None: every app/env)."""

    url: str
    apps: frozenset[str] | None = None
    envs: frozenset[str] | None = None

    def wants(self, event: Event) -> bool:
        if self.apps is not None and event.app not in self.apps:
            return False
        return self.envs is None or event.env is None or event.env in self.envs


class Notifier:
    """Posts in the background: :meth:`send` queues and returns at once."""

    def __init__(self, poster: Poster, *, capacity: int = 1000) -> None:
        self._poster = poster
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        """Posts dropped because the queue was full (chat unreachable for long)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="berth-chat-posts", daemon=True)
        self._thread.start()

    def send(self, url: str, body: Mapping[str, Any]) -> None:
        """Queue a post; never blocks (a full queue drops it and counts it)."""
        try:
            self._queue.put_nowait((url, dict(body)))
        except queue.Full:
            self.dropped += 1

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued was sent (for an orderly shutdown and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                url, body = item
                self._poster.post(url, body)
            finally:
                self._queue.task_done()


NOTIFIED_ACTIONS = frozenset(
    {
        "build.failed",
        "release.entered",
        "gate.passed",
        "gate.failed",
        "approval.needed",
        "rollout.finished",
        "rollout.succeeded",
        "rollout.rolled_back",
        "rollout.aborted",
    }
)


def notification_text(event: Event) -> str | None:
    """What a notification about ``event`` says, or None when it is not one to send."""
    if event.action not in NOTIFIED_ACTIONS:
        return None
    detail = event.detail
    release = f"release {event.release_id}" if event.release_id is not None else "a release"
    where = f"{event.app}/{event.env}" if event.env else str(event.app)
    message = str(detail.get("message") or detail.get("reason") or "")
    if event.action == "build.failed":
        commit = str(detail.get("commit", ""))[:12]
        return f":x: {event.app}: build of {commit} failed" + (f": {message}" if message else "")
    if event.action == "release.entered":
        return f":arrow_right: {where}: {release} is running"
    if event.action == "gate.passed":
        gate = detail.get("gate", "")
        if gate == "none":
            return None
        return f":white_check_mark: {where}: {release} passed the {gate} gate ({message})"
    if event.action == "gate.failed":
        return f":no_entry: {where}: {release} failed the {detail.get('gate', '')} gate ({message})"
    if event.action == "approval.needed":
        who = ", ".join(detail.get("approvers", [])) or "anyone with deploy rights"
        return (
            f":raising_hand: {where}: {release} needs {detail.get('required', 1)} approval(s) "
            f"from {who}: /berth approve {event.app} {event.env}"
        )
    verb = event.action.removeprefix("rollout.").replace("_", " ")
    return f":arrows_counterclockwise: {where}: rollout of {release} {verb}" + (
        f" ({message})" if message else ""
    )


class EventWatcher:
    """Turns new events into notifications; call :meth:`poll_once` periodically (the
    control plane's scheduler does)."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        targets: Sequence[NotificationTarget],
        *,
        after_id: int | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._targets = tuple(targets)
        self._cursor = after_id if after_id is not None else self._latest()

    def _latest(self) -> int:
        newest = self._store.list_events(limit=1, newest_first=True)
        return newest[0].id if newest else 0

    @property
    def cursor(self) -> int:
        return self._cursor

    def poll_once(self, *, limit: int = 500) -> int:
        """Queue notifications for events after the cursor; return how many were queued."""
        events = self._store.list_events(after_id=self._cursor, limit=limit)
        queued = 0
        for event in events:
            self._cursor = event.id
            text = notification_text(event)
            if text is None:
                continue
            for target in self._targets:
                if target.wants(event):
                    self._notifier.send(target.url, {"text": text})
                    queued += 1
        return queued
