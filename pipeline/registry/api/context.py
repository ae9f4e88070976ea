"""What every handler of the registry API works with, and the request plumbing they share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request

from pipeline.logs import get_logger
from pipeline.registry.auth import Authenticator, Principal, TokenService
from pipeline.registry.config import RegistryConfig
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.storage import RegistryStorage, UploadWriter

T = TypeVar("T")
FLUSH_SIZE = 1 << 20
log = get_logger("registry")


@dataclass
class RegistryContext:
    """The storage, authenticator and settings behind one registry API."""

    storage: RegistryStorage
    auth: Authenticator
    config: RegistryConfig
    token_service: TokenService | None = None
    uploads_in_flight: int = field(default=0)

    async def blocking(self, func: Callable[..., T], *args: object) -> T:
        """Run a blocking storage call in a worker thread."""
        return await anyio.to_thread.run_sync(func, *args)

    def url(self, request: Request, path: str) -> str:
        """An absolute path below where the registry is mounted (``/v2/...``)."""
        return f"{request.scope.get('root_path', '')}{path}"

    def base_url(self, request: Request) -> str:
        """``scheme://host[/root]`` of this request, for auth challenges."""
        return str(request.base_url).rstrip("/")

    @contextlib.asynccontextmanager
    async def upload_slot(self) -> AsyncIterator[None]:
        """Admit one more body upload, or answer 429 when too many are running."""
        if self.uploads_in_flight >= self.config.max_concurrent_uploads:
            raise DistributionError(
                ErrorCode.TOO_MANY_REQUESTS,
                {"reason": f"{self.uploads_in_flight} uploads are running; retry shortly"},
                headers={"Retry-After": "1"},
            )
        self.uploads_in_flight += 1
        try:
            yield
        finally:
            self.uploads_in_flight -= 1


@dataclass(frozen=True)
class Call:
    """One authenticated request: who made it and for which repository."""

    request: Request
    principal: Principal
    name: str
    reference: str


def declared_length(request: Request) -> int | None:
    """The request's ``Content-Length``; 400 ``SIZE_INVALID`` if it is not a number."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise DistributionError(ErrorCode.SIZE_INVALID, {"content_length": raw})
    return int(raw)


def check_room(ctx: RegistryContext, incoming: int | None, have: int) -> None:
    """Refuse a body that cannot fit: over ``max_blob_size`` or over the free disk space."""
    if incoming is None:
        return
    limit = ctx.config.max_blob_size
    if limit is not None and have + incoming > limit:
        raise DistributionError(
            ErrorCode.SIZE_INVALID,
            {"reason": f"blobs are limited to {limit} bytes", "limit": limit},
            status=413,
        )
    free = ctx.storage.free_space()
    if free is not None and incoming > free:
        raise DistributionError(
            ErrorCode.SIZE_INVALID,
            {"reason": f"the registry has {free} bytes of free space, the body is {incoming}"},
            status=413,
        )


async def stream_body(ctx: RegistryContext, request: Request, writer: UploadWriter) -> int:
    """Append the request body to ``writer`` without holding it in memory.

    Chunks are gathered to about 1 MiB and written (and hashed) in a worker thread.
    When the client disconnects, stalls longer than the idle timeout, or the body grows
    past the blob limit, what this request wrote is discarded and an error raised.
    Returns the number of bytes received.
    """
    received = 0
    pending: list[bytes] = []
    pending_size = 0
    limit = ctx.config.max_blob_size
    try:
        async with contextlib.aclosing(request.stream()) as chunks:
            while True:
                with anyio.fail_after(ctx.config.body_idle_timeout):
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                if not chunk:
                    continue
                received += len(chunk)
                if limit is not None and writer.offset + pending_size + len(chunk) > limit:
                    raise DistributionError(
                        ErrorCode.SIZE_INVALID,
                        {"reason": f"blobs are limited to {limit} bytes", "limit": limit},
                        status=413,
                    )
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= FLUSH_SIZE:
                    await ctx.blocking(writer.write, b"".join(pending))
                    pending, pending_size = [], 0
        if pending:
            await ctx.blocking(writer.write, b"".join(pending))
    except ClientDisconnect as exc:
        await ctx.blocking(writer.abort)
        log.info("client disconnected during an upload; its bytes were discarded")
        raise DistributionError(
            ErrorCode.BLOB_UPLOAD_INVALID, {"reason": "the client disconnected"}
        ) from exc
    except TimeoutError as exc:
        await ctx.blocking(writer.abort)
        raise DistributionError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            {"reason": f"no data for {ctx.config.body_idle_timeout:g}s; upload abandoned"},
        ) from exc
    except BaseException:
        with anyio.CancelScope(shield=True):
            await ctx.blocking(writer.abort)
        raise
    return received


async def read_limited(
    request: Request, limit: int, too_large: Callable[[int], Exception]
) -> bytes:
    """The whole (small) body, refusing to buffer more than ``limit`` bytes."""
    length = declared_length(request)
    if length is not None and length > limit:
        raise too_large(length)
    chunks: list[bytes] = []
    size = 0
    try:
        async with contextlib.aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise too_large(size)
                chunks.append(chunk)
    except ClientDisconnect as exc:
        raise DistributionError(
            ErrorCode.MANIFEST_INVALID, {"reason": "the client disconnected"}
        ) from exc
    return b"".join(chunks)
