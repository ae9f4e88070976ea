"""Blob uploads: ``POST``/``PATCH``/``PUT``/``GET``/``DELETE /v2/NAME/blobs/uploads/[ID]``.

Monolithic (``POST ?digest=`` with the body), chunked (``PATCH`` with or without
``Content-Range``, then ``PUT ?digest=``, optionally with a last chunk) and
cross-repository mounts (``POST ?mount=DIGEST&from=REPO``) all end in
``RegistryStorage.complete_upload``, the one place where bytes become a blob.
"""

from __future__ import annotations

import contextlib

from starlette.responses import Response

from pipeline.registry.access import PULL, Access
from pipeline.registry.api.context import (
    Call,
    RegistryContext,
    check_room,
    declared_length,
    stream_body,
)
from pipeline.registry.api.responses import empty_response
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.names import is_valid_name, parse_digest
from pipeline.registry.ranges import parse_content_range, upload_range_header
from pipeline.registry.storage import UploadState
from runners.oci.digest import Digest


def _session_headers(ctx: RegistryContext, call: Call, state: UploadState) -> dict[str, str]:
    return {
        "Location": ctx.url(call.request, f"/v2/{call.name}/blobs/uploads/{state.upload_id}"),
        "Range": upload_range_header(state.offset),
        "Docker-Upload-UUID": state.upload_id,
    }


def _created(ctx: RegistryContext, call: Call, digest: Digest) -> Response:
    return empty_response(
        201,
        {
            "Location": ctx.url(call.request, f"/v2/{call.name}/blobs/{digest}"),
            "Docker-Content-Digest": str(digest),
        },
    )


def _has_body(call: Call) -> bool:
    length = declared_length(call.request)
    if length is not None:
        return length > 0
    return "transfer-encoding" in call.request.headers


async def _append(ctx: RegistryContext, call: Call, upload_id: str) -> UploadState:
    """Append the request body to a session, honouring ``Content-Range`` if sent."""
    raw_range = call.request.headers.get("content-range")
    expected: int | None = None
    start: int | None = None
    if raw_range is not None:
        start, end = parse_content_range(raw_range)
        expected = end - start + 1
        length = declared_length(call.request)
        if length is not None and length != expected:
            raise DistributionError(
                ErrorCode.BLOB_UPLOAD_INVALID,
                {
                    "reason": f"Content-Range {raw_range!r} spans {expected} bytes, "
                    f"Content-Length says {length}"
                },
                status=416,
            )
    async with ctx.upload_slot():
        writer = await ctx.blocking(ctx.storage.open_upload, call.name, upload_id, start)
        try:
            check_room(ctx, declared_length(call.request), writer.offset)
        except BaseException:
            await ctx.blocking(writer.abort)
            raise
        received = await stream_body(ctx, call.request, writer)
        if expected is not None and received != expected:
            await ctx.blocking(writer.abort)
            raise DistributionError(
                ErrorCode.SIZE_INVALID,
                {"reason": f"Content-Range announced {expected} bytes, {received} arrived"},
            )
        return await ctx.blocking(writer.finish)


async def start_upload(ctx: RegistryContext, call: Call) -> Response:
    params = call.request.query_params
    mount = params.get("mount")
    if mount is not None:
        digest = parse_digest(mount)
        source = params.get("from")
        if (
            source
            and is_valid_name(source)
            and ctx.auth.permits(call.principal, Access.repository(source, PULL))
            and await ctx.blocking(ctx.storage.mount_blob, call.name, digest, source)
        ):
            return _created(ctx, call, digest)
        # not mountable: fall back to a normal upload, as the spec asks
    raw_digest = params.get("digest")
    if raw_digest is not None and mount is None:
        digest = parse_digest(raw_digest)
        state = await ctx.blocking(ctx.storage.create_upload, call.name)
        try:
            await _append(ctx, call, state.upload_id)
            await ctx.blocking(ctx.storage.complete_upload, call.name, state.upload_id, digest)
        except BaseException:
            await ctx.blocking(_forget, ctx, call.name, state.upload_id)
            raise
        return _created(ctx, call, digest)
    state = await ctx.blocking(ctx.storage.create_upload, call.name)
    return empty_response(202, _session_headers(ctx, call, state))


def _forget(ctx: RegistryContext, name: str, upload_id: str) -> None:
    # already gone when it completed, or was discarded on a digest mismatch
    with contextlib.suppress(DistributionError):
        ctx.storage.cancel_upload(name, upload_id)


async def patch_upload(ctx: RegistryContext, call: Call) -> Response:
    state = await _append(ctx, call, call.reference)
    return empty_response(202, _session_headers(ctx, call, state))


async def finish_upload(ctx: RegistryContext, call: Call) -> Response:
    raw_digest = call.request.query_params.get("digest")
    if raw_digest is None:
        raise DistributionError(
            ErrorCode.DIGEST_INVALID, {"reason": "PUT must carry ?digest= to complete an upload"}
        )
    digest = parse_digest(raw_digest)
    if _has_body(call):
        await _append(ctx, call, call.reference)
    else:
        await ctx.blocking(ctx.storage.upload_state, call.name, call.reference)
    await ctx.blocking(ctx.storage.complete_upload, call.name, call.reference, digest)
    return _created(ctx, call, digest)


async def upload_status(ctx: RegistryContext, call: Call) -> Response:
    state = await ctx.blocking(ctx.storage.upload_state, call.name, call.reference)
    return empty_response(204, _session_headers(ctx, call, state))


async def cancel_upload(ctx: RegistryContext, call: Call) -> Response:
    await ctx.blocking(ctx.storage.cancel_upload, call.name, call.reference)
    return empty_response(204)
