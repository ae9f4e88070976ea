"""``n``/``last`` pagination of tag and repository lists, with the RFC 5988 ``Link`` header."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from pipeline.registry.errors import DistributionError, ErrorCode

# The largest page berth serves; a bigger ``n`` is lowered to it and the Link header
# leads the client on, which the spec allows ("fewer than n results").
MAX_PAGE = 1000


@dataclass(frozen=True)
class Page:
    """One page of a sorted list and the ``last`` value of the next page, if any."""

    items: tuple[str, ...]
    next_last: str | None


def parse_page_size(raw: str | None, maximum: int = MAX_PAGE) -> int | None:
    """The ``n`` query parameter: ``None`` when absent, else an int in ``0..maximum``."""
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise DistributionError(
            ErrorCode.PAGINATION_NUMBER_INVALID,
            {"n": raw, "reason": "n must be a non-negative integer"},
        )
    return min(int(raw), maximum)


def paginate(items: Sequence[str], n: int | None, last: str | None) -> Page:
    """The items after ``last`` (exclusive), at most ``n`` of them; ``items`` are sorted."""
    start = bisect.bisect_right(items, last) if last else 0
    if n is None:
        return Page(tuple(items[start:]), None)
    chunk = tuple(items[start : start + n])
    more = start + n < len(items) and n > 0
    return Page(chunk, chunk[-1] if more and chunk else None)


def link_header(path: str, n: int, next_last: str) -> str:
    """``Link: <path?n=..&last=..>; rel="next"`` for the page after ``next_last``."""
    return f'<{path}?{urlencode({"n": n, "last": next_last})}>; rel="next"'
