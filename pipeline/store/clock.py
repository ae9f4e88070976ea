"""Where the store (and anything else that stamps times) gets "now" from.

Every timestamp berth writes is an aware UTC :class:`~datetime.datetime`. Code that needs
the time takes a :class:`Clock`; production passes :class:`SystemClock`, tests pass a
:class:`FixedClock` they move by hand, so timestamps in assertions are exact.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until a test moves it; safe to share between threads."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = _as_utc(start or datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (an aware datetime; converted to UTC)."""
        with self._lock:
            self._now = _as_utc(when)

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds) and return the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError(f"a clock only moves forward (got {step})")
        with self._lock:
            self._now += step
            return self._now


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: pass an aware UTC datetime")
    return when.astimezone(UTC)
