from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.units import (
    Percent,
    UnitError,
    format_duration,
    format_size,
    parse_cpu,
    parse_duration,
    parse_percent,
    parse_size,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("2d", timedelta(days=2)),
        ("1m30s", timedelta(seconds=90)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 minutes", 'must be a duration like 90s, 5m or 1h30m (got "5 minutes")'),
        (30, "must be a duration like 90s, 5m or 1h30m (got 30); add a unit, e.g. 30s"),
        ("", 'must be a duration like 90s, 5m or 1h30m (got "")'),
        ("-5m", 'must be a duration like 90s, 5m or 1h30m (got "-5m")'),
        (True, "must be a duration like 90s, 5m or 1h30m (got true)"),
        (None, "must be a duration like 90s, 5m or 1h30m (got nothing)"),
    ],
)
def test_bad_durations_say_what_is_expected(value: object, message: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


def test_duration_ranges() -> None:
    with pytest.raises(UnitError, match=r"^must be positive \(got 0s\)$"):
        parse_duration("0s", minimum=timedelta(milliseconds=1))
    with pytest.raises(UnitError, match=r"^must be at least 1s \(got 500ms\)$"):
        parse_duration("500ms", minimum=timedelta(seconds=1))
    with pytest.raises(UnitError, match=r"^must be at most 1h \(got 2h\)$"):
        parse_duration("2h", maximum=timedelta(hours=1))
    assert parse_duration("1h", maximum=timedelta(hours=1)) == timedelta(hours=1)


@given(st.integers(min_value=0, max_value=10**10))
def test_format_duration_round_trips(millis: int) -> None:
    duration = timedelta(milliseconds=millis)
    assert parse_duration(format_duration(duration)) == duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128Mi", 128 * 1024**2),
        ("1Gi", 1024**3),
        ("512M", 512 * 1000**2),
        ("2G", 2 * 1000**3),
        ("1.5Ki", 1536),
        ("4096", 4096),
        (4096, 4096),
    ],
)
def test_sizes_parse(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "512m",
            'must be a size like 128Mi, 1Gi or 512M (got "512m"); '
            "suffixes are case-sensitive: k, M, G, T or Ki, Mi, Gi, Ti",
        ),
        ("lots", 'must be a size like 128Mi, 1Gi or 512M (got "lots")'),
        (-1, "must not be negative (got -1)"),
        (1.5, "must be a size like 128Mi, 1Gi or 512M (got 1.5)"),
    ],
)
def test_bad_sizes(value: object, message: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_size(value)
    assert str(caught.value) == message


def test_size_ranges_and_format() -> None:
    with pytest.raises(UnitError, match=r'^must be at least 1Mi \(got "4Ki"\)$'):
        parse_size("4Ki", minimum=1024**2)
    with pytest.raises(UnitError, match=r'^must be at most 1Gi \(got "2Gi"\)$'):
        parse_size("2Gi", maximum=1024**3)
    assert format_size(128 * 1024**2) == "128Mi"
    assert format_size(1000) == "1000"


@given(st.integers(min_value=0, max_value=2**50))
def test_format_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_cpu() -> None:
    assert parse_cpu("500m") == 0.5
    assert parse_cpu(2) == 2.0
    assert parse_cpu("0.25") == 0.25
    with pytest.raises(UnitError, match=r"^must be more than 0 cores \(got 0\)$"):
        parse_cpu(0)
    with pytest.raises(UnitError, match="millicores like 500m"):
        parse_cpu("half")
    with pytest.raises(UnitError, match=r"^must be at most 1024 cores"):
        parse_cpu(2048)


def test_percentages() -> None:
    assert parse_percent("5%") == Percent(5)
    assert parse_percent("0.5%").fraction == pytest.approx(0.005)
    assert parse_percent(25) == Percent(25)
    assert str(Percent(12.5)) == "12.5%"
    assert Percent(25).of(10) == 2.5
    with pytest.raises(UnitError, match=r'^must be between 0% and 100% \(got "150%"\)$'):
        parse_percent("150%")
    with pytest.raises(UnitError, match=r'^must be a percentage like 5% or 0.5% \(got "5"\)$'):
        parse_percent("5")
    with pytest.raises(UnitError, match="between 0% and 100%"):
        parse_percent(float("nan"))
