from __future__ import annotations

import pytest

from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.paging import link_header, paginate, parse_page_size
from pipeline.registry.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    parse_content_range,
    parse_range,
    upload_range_header,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9, 100)),
        ("bytes=90-", ByteRange(90, 99, 100)),
        ("bytes=-10", ByteRange(90, 99, 100)),
        ("bytes=-500", ByteRange(0, 99, 100)),
        ("bytes=50-1000", ByteRange(50, 99, 100)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole blob is sent
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header", ["bytes=100-", "bytes=5-2", "bytes=-0", "bytes=-", "items=0-1", "0-1"]
)
def test_unsatisfiable_or_malformed_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, 100)
    assert info.value.total == 100


def test_content_range_of_a_byte_range() -> None:
    assert ByteRange(10, 19, 100).content_range() == "bytes 10-19/100"
    assert ByteRange(10, 19, 100).length == 10


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0-99", (0, 99)), ("bytes 100-199", (100, 199)), ("bytes=5-5", (5, 5)), ("0-9/10", (0, 9))],
)
def test_parse_content_range(header: str, expected: tuple[int, int]) -> None:
    assert parse_content_range(header) == expected


@pytest.mark.parametrize("header", ["", "abc", "5-", "9-3", "-5"])
def test_bad_content_range_is_416(header: str) -> None:
    with pytest.raises(DistributionError) as info:
        parse_content_range(header)
    assert (info.value.code, info.value.status) == (ErrorCode.BLOB_UPLOAD_INVALID, 416)


def test_upload_range_header() -> None:
    assert upload_range_header(0) == "0-0"
    assert upload_range_header(1) == "0-0"
    assert upload_range_header(1000) == "0-999"


ITEMS = ["a", "b", "c", "d", "e"]


def test_paginate_pages_through_everything_once() -> None:
    seen: list[str] = []
    last: str | None = None
    for _ in range(10):
        page = paginate(ITEMS, 2, last)
        seen += page.items
        if page.next_last is None:
            break
        last = page.next_last
    assert seen == ITEMS


def test_paginate_edges() -> None:
    assert paginate(ITEMS, None, None).items == tuple(ITEMS)
    assert paginate(ITEMS, None, "c").items == ("d", "e")
    assert paginate(ITEMS, 0, None).items == ()
    assert paginate(ITEMS, 0, None).next_last is None
    assert paginate(ITEMS, 5, None).next_last is None
    assert paginate(ITEMS, 2, "zzz").items == ()
    assert paginate(ITEMS, 2, "bb").items == ("c", "d")


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "", "٣"])
def test_invalid_page_size(raw: str) -> None:
    with pytest.raises(DistributionError) as info:
        parse_page_size(raw)
    assert info.value.status == 400
    assert info.value.code is ErrorCode.PAGINATION_NUMBER_INVALID


def test_page_size_is_capped() -> None:
    assert parse_page_size("999999", maximum=50) == 50
    assert parse_page_size(None) is None


def test_link_header() -> None:
    assert (
        link_header("/v2/a/b/tags/list", 2, "v1") == '</v2/a/b/tags/list?n=2&last=v1>; rel="next"'
    )
