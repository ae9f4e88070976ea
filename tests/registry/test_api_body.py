"""Streaming request bodies into uploads: disconnects, stalls, limits (real ASGI messages)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from starlette.requests import Request

from pipeline.registry.api.context import RegistryContext, stream_body
from pipeline.registry.auth import NoAuth
from pipeline.registry.config import RegistryConfig
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.fs import FilesystemRegistryStorage

pytestmark = pytest.mark.unit

Receive = Callable[[], Awaitable[dict[str, Any]]]


def _request(receive: Receive) -> Request:
    scope = {"type": "http", "method": "PATCH", "path": "/", "headers": [], "query_string": b""}
    return Request(scope, receive)


def _messages(*events: dict[str, Any], then_stall: bool = False) -> Receive:
    queue = list(events)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then_stall:
            await anyio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


def _run(
    storage: FilesystemRegistryStorage, receive: Receive, config: RegistryConfig | None = None
) -> tuple[str, int | DistributionError]:
    ctx = RegistryContext(storage, NoAuth(), config or RegistryConfig())
    upload_id = storage.create_upload("app").upload_id

    async def main() -> int | DistributionError:
        writer = storage.open_upload("app", upload_id, None)
        try:
            received = await stream_body(ctx, _request(receive), writer)
        except DistributionError as exc:
            return exc
        writer.finish()
        return received

    return upload_id, anyio.run(main)


def test_body_arrives_in_pieces(storage: FilesystemRegistryStorage) -> None:
    pieces = [bytes([i]) * 700_000 for i in range(4)]
    events = [{"type": "http.request", "body": p, "more_body": True} for p in pieces]
    events.append({"type": "http.request", "body": b"", "more_body": False})
    upload_id, result = _run(storage, _messages(*events))
    assert result == 2_800_000
    assert storage.upload_state("app", upload_id).offset == 2_800_000
    assert (storage.root / "uploads" / upload_id / "data").read_bytes() == b"".join(pieces)


def test_disconnect_discards_what_the_request_sent(storage: FilesystemRegistryStorage) -> None:
    events = [{"type": "http.request", "body": b"x" * 3_000_000, "more_body": True}]
    upload_id, result = _run(storage, _messages(*events))
    assert isinstance(result, DistributionError)
    assert result.code is ErrorCode.BLOB_UPLOAD_INVALID
    assert "disconnected" in str(result)
    assert storage.upload_state("app", upload_id).offset == 0
    assert (storage.root / "uploads" / upload_id / "data").stat().st_size == 0


def test_a_stalled_body_is_abandoned(storage: FilesystemRegistryStorage) -> None:
    events = [{"type": "http.request", "body": b"some", "more_body": True}]
    config = RegistryConfig(body_idle_timeout=0.2)
    upload_id, result = _run(storage, _messages(*events, then_stall=True), config)
    assert isinstance(result, DistributionError)
    assert "no data for 0.2s" in str(result)
    assert storage.upload_state("app", upload_id).offset == 0


def test_a_body_growing_past_the_limit_is_413(storage: FilesystemRegistryStorage) -> None:
    events = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(3)]
    upload_id, result = _run(storage, _messages(*events), RegistryConfig(max_blob_size=1000))
    assert isinstance(result, DistributionError)
    assert (result.code, result.status) == (ErrorCode.SIZE_INVALID, 413)
    assert storage.upload_state("app", upload_id).offset == 0
