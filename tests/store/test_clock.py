from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.store import Clock, FixedClock, SystemClock

pytestmark = pytest.mark.unit


def test_fixed_clock_stands_still_until_moved() -> None:
    clock = FixedClock(datetime(2030, 5, 1, 12, 0, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    assert clock.advance(90) == datetime(2030, 5, 1, 12, 1, 30, tzinfo=UTC)
    assert clock.advance(timedelta(hours=1)) == datetime(2030, 5, 1, 13, 1, 30, tzinfo=UTC)


def test_fixed_clock_converts_to_utc_and_refuses_naive_or_backwards() -> None:
    clock = FixedClock()
    clock.set(datetime(2030, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        clock.set(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_system_clock_is_aware_utc() -> None:
    clock: Clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert isinstance(FixedClock(), Clock)
