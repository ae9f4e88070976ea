"""Durations, sizes, CPU amounts and percentages as people write them in berth's YAML.

Every parser takes what YAML produced (a string, sometimes a number), returns a plain
value and raises :class:`UnitError` with a message that shows the expected form and
the value it got, so a config problem reads
``run/health/interval: must be a duration like 90s, 5m or 1h30m (got "5 minutes")``.

- Durations: ``500ms``, ``90s``, ``5m``, ``1h30m``, ``1.5h``, ``2d`` -> :class:`~datetime.timedelta`.
  A bare number is refused: ``timeout: 30`` could mean seconds or minutes.
- Sizes: ``128Mi``, ``1Gi`` (powers of 1024), ``512M``, ``2G`` (powers of 1000), or an
  integer number of bytes -> ``int`` bytes. Suffixes are case-sensitive, as in Kubernetes.
- CPU: ``0.5``, ``2`` (cores) or ``500m`` (millicores) -> ``float`` cores.
- Percentages: ``5%``, ``0.5%`` or a bare number of percent points -> :class:`Percent`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta

__all__ = [
    "Percent",
    "UnitError",
    "format_duration",
    "format_size",
    "parse_cpu",
    "parse_duration",
    "parse_percent",
    "parse_size",
    "show_value",
]


class UnitError(ValueError):
    """A value is not a valid duration, size, CPU amount or percentage, or out of range."""


def show_value(value: object) -> str:
    """Render a YAML value for an error message: strings quoted, long ones shortened."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(text, ensure_ascii=False)
    return str(value)


# --- durations ---------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
_DURATION_HINT = "a duration like 90s, 5m or 1h30m"


def parse_duration(
    value: object, *, minimum: timedelta | None = None, maximum: timedelta | None = None
) -> timedelta:
    """Parse ``90s`` / ``5m`` / ``1h30m`` into a timedelta and check it lies in range."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        seconds = sum(
            float(number) * _DURATION_UNITS[unit]
            for number, unit in _DURATION_PART.findall(value.strip())
        )
        result = timedelta(seconds=seconds)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        raise UnitError(
            f"must be {_DURATION_HINT} (got {show_value(value)}); add a unit, e.g. {value}s"
        )
    else:
        raise UnitError(f"must be {_DURATION_HINT} (got {show_value(value)})")
    if minimum is not None and result < minimum:
        qualifier = (
            "positive"
            if minimum <= timedelta(milliseconds=1)
            else f"at least {format_duration(minimum)}"
        )
        raise UnitError(f"must be {qualifier} (got {format_duration(result)})")
    if maximum is not None and result > maximum:
        raise UnitError(
            f"must be at most {format_duration(maximum)} (got {format_duration(result)})"
        )
    return result


def format_duration(value: timedelta) -> str:
    """The canonical spelling of a duration: ``1h30m``, ``90s`` -> ``1m30s``, ``250ms``."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    sign = "-" if millis < 0 else ""
    millis = abs(millis)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if millis:
        parts.append(f"{millis}ms")
    return sign + "".join(parts)


# --- sizes -------------------------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)(k|M|G|T|Ki|Mi|Gi|Ti)?")
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$"
_SIZE_HINT = "a size like 128Mi, 1Gi or 512M"


def parse_size(value: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Parse ``128Mi`` / ``1Gi`` / ``512M`` / a byte count into bytes and range-check it."""
    if isinstance(value, int) and not isinstance(value, bool):
        result = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        number, unit = match.group(1), match.group(2) or ""
        result = math.ceil(float(number) * _SIZE_UNITS[unit])
    else:
        hint = ""
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?\s*[a-zA-Z]+", value.strip()):
            hint = "; suffixes are case-sensitive: k, M, G, T or Ki, Mi, Gi, Ti"
        raise UnitError(f"must be {_SIZE_HINT} (got {show_value(value)}){hint}")
    if result < 0:
        raise UnitError(f"must not be negative (got {show_value(value)})")
    if minimum is not None and result < minimum:
        raise UnitError(f"must be at least {format_size(minimum)} (got {show_value(value)})")
    if maximum is not None and result > maximum:
        raise UnitError(f"must be at most {format_size(maximum)} (got {show_value(value)})")
    return result


def format_size(size: int) -> str:
    """``134217728`` -> ``128Mi``; sizes that are not a whole binary unit stay in bytes."""
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


# --- CPU ---------------------------------------------------------------------------

_MILLICORES = re.compile(r"(\d+)m")
_CPU_HINT = "a number of cores like 0.5 or 2, or millicores like 500m"


def parse_cpu(value: object, *, maximum: float = 1024.0) -> float:
    """Parse ``0.5`` / ``2`` / ``500m`` into a (positive) number of cores."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        cores = float(value)
    elif isinstance(value, str) and (match := _MILLICORES.fullmatch(value.strip())):
        cores = int(match.group(1)) / 1000
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        cores = float(value)
    else:
        raise UnitError(f"must be {_CPU_HINT} (got {show_value(value)})")
    if not cores > 0:
        raise UnitError(f"must be more than 0 cores (got {show_value(value)})")
    if cores > maximum:
        raise UnitError(f"must be at most {maximum:g} cores (got {show_value(value)})")
    return cores


# --- percentages -------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Percent:
    """A share between 0 and 100 percent (``value`` is in percent points: 5 means 5 %)."""

    value: float

    @property
    def fraction(self) -> float:
        """The share as a fraction of one: 5 % -> 0.05."""
        return self.value / 100

    def of(self, count: int) -> float:
        """This share of ``count`` (not rounded; callers decide whether to round up)."""
        return count * self.value / 100

    def __str__(self) -> str:
        return f"{self.value:g}%"


_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
PERCENT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"
_PERCENT_HINT = "a percentage like 5% or 0.5%"


def parse_percent(value: object) -> Percent:
    """Parse ``5%`` / ``0.5%`` / a number of percent points and check 0 <= p <= 100."""
    if isinstance(value, Percent):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        points = float(value)
    elif isinstance(value, str) and (match := _PERCENT.fullmatch(value.strip())):
        points = float(match.group(1))
    else:
        raise UnitError(f"must be {_PERCENT_HINT} (got {show_value(value)})")
    if not 0 <= points <= 100:
        raise UnitError(f"must be between 0% and 100% (got {show_value(value)})")
    return Percent(points)
