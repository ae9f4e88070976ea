"""Time as the registry sees it: upload expiry, token lifetimes and GC grace periods."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch; the registry never reads the time any other way."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock (``time.time``)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to, so expiry and grace periods can be tested."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        with self._lock:
            self._now += seconds
