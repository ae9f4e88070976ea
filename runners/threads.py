"""Running one call on a thread of its own and collecting its result or its exception."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def spawn(func: Callable[[], T], name: str) -> Future[T]:
    """Start ``func`` on a new daemon thread; the future holds what it returned or raised."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(func())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
