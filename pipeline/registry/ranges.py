"""Byte ranges: ``Range`` on blob downloads and ``Content-Range`` on chunked uploads."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.registry.errors import DistributionError, ErrorCode

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
# Clients send the spec's bare "start-end"; some prefix it with "bytes " or "bytes=".
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range ``start``..``end`` of a blob of ``total`` bytes."""

    start: int
    end: int
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.total}"


class RangeNotSatisfiable(Exception):
    """The ``Range`` header is malformed or lies outside the blob (answer 416)."""

    def __init__(self, total: int, header: str) -> None:
        super().__init__(f"range {header!r} cannot be served from a blob of {total} bytes")
        self.total = total


def parse_range(header: str | None, total: int) -> ByteRange | None:
    """The single range ``header`` asks for, ``None`` for the whole blob.

    A header with several ranges is ignored (RFC 9110 lets a server answer those with
    the full content); a malformed or unsatisfiable one raises
    :class:`RangeNotSatisfiable`, as Go's ``http.ServeContent`` in CNCF distribution does.
    """
    if header is None:
        return None
    text = header.strip()
    if "," in text:
        return None
    match = _RANGE_RE.fullmatch(text)
    if not match or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiable(total, header)
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0 or total == 0:
            raise RangeNotSatisfiable(total, header)
        return ByteRange(max(total - suffix, 0), total - 1, total)
    start = int(first)
    end = total - 1 if last == "" else min(int(last), total - 1)
    if start >= total or (last != "" and int(last) < start):
        raise RangeNotSatisfiable(total, header)
    return ByteRange(start, end, total)


def parse_content_range(header: str) -> tuple[int, int]:
    """``(start, end)`` of a chunk's ``Content-Range``; 416 ``BLOB_UPLOAD_INVALID`` if malformed."""
    match = _CONTENT_RANGE_RE.fullmatch(header.strip())
    if not match:
        raise DistributionError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            {"reason": f"Content-Range {header!r} is not START-END"},
            status=416,
        )
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise DistributionError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            {"reason": f"Content-Range {header!r} ends before it starts"},
            status=416,
        )
    return start, end


def upload_range_header(size: int) -> str:
    """The ``Range`` header of an upload holding ``size`` bytes (``0-0`` when empty).

    The spec's inclusive form cannot express "nothing yet"; like CNCF distribution,
    berth answers ``0-0`` for an empty upload and ``0-(size-1)`` otherwise.
    """
    return f"0-{max(size - 1, 0)}"
