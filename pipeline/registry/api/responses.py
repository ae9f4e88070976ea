"""Responses of the registry API: JSON documents, spec errors and streamed blobs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from pipeline.registry.errors import DistributionError
from pipeline.registry.ranges import ByteRange
from pipeline.registry.storage import BlobReader

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
READ_CHUNK = 1 << 20


def _headers(extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = dict(extra or {})
    headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
    return headers


def json_response(
    document: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    body = json.dumps(document, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=_headers(headers), media_type=media_type)


def error_response(error: DistributionError) -> Response:
    return json_response(error.body(), error.status, error.headers)


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    merged = _headers(headers)
    merged.setdefault("Content-Length", "0")
    return Response(b"", status_code=status, headers=merged)


def bytes_response(
    data: bytes, media_type: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(data, status_code=200, headers=_headers(headers), media_type=media_type)


class BlobResponse(Response):
    """Streams (part of) an open blob in 1 MiB reads done off the event loop.

    The reader is closed when the response ends, also when the client goes away, which
    stops the streaming instead of reading the rest of the file for nobody.
    """

    def __init__(
        self,
        reader: BlobReader,
        byte_range: ByteRange | None,
        headers: Mapping[str, str],
    ) -> None:
        self.reader = reader
        self.start = byte_range.start if byte_range else 0
        self.length = byte_range.length if byte_range else reader.size
        merged = _headers(headers)
        merged["Content-Length"] = str(self.length)
        merged["Accept-Ranges"] = "bytes"
        if byte_range is not None:
            merged["Content-Range"] = byte_range.content_range()
        super().__init__(
            None,
            status_code=206 if byte_range else 200,
            headers=merged,
            media_type="application/octet-stream",
        )

    async def _stream(self, send: Send) -> None:
        offset, remaining = self.start, self.length
        while remaining > 0:
            size = min(READ_CHUNK, remaining)
            chunk = await anyio.to_thread.run_sync(self.reader.read_at, offset, size)
            if not chunk:
                raise RuntimeError(f"blob shrank while being sent (at byte {offset})")
            offset += len(chunk)
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if scope.get("method") == "HEAD" or self.length == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            group.cancel_scope.cancel()
                            return

                group.start_soon(watch_disconnect)
                await self._stream(send)
                group.cancel_scope.cancel()
        finally:
            self.reader.close()
