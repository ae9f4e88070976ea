"""``HEAD``/``GET``/``DELETE /v2/NAME/blobs/DIGEST``."""

from __future__ import annotations

from starlette.responses import Response

from pipeline.registry.api.context import Call, RegistryContext
from pipeline.registry.api.responses import BlobResponse, empty_response
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.names import parse_digest
from pipeline.registry.ranges import RangeNotSatisfiable, parse_range


def _unknown(name: str, digest: str) -> DistributionError:
    return DistributionError(ErrorCode.BLOB_UNKNOWN, {"repository": name, "digest": digest})


async def head_blob(ctx: RegistryContext, call: Call) -> Response:
    digest = parse_digest(call.reference)
    size = await ctx.blocking(ctx.storage.blob_size, call.name, digest)
    if size is None:
        raise _unknown(call.name, str(digest))
    return empty_response(
        200,
        {
            "Content-Length": str(size),
            "Docker-Content-Digest": str(digest),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        },
    )


async def get_blob(ctx: RegistryContext, call: Call) -> Response:
    digest = parse_digest(call.reference)
    reader = await ctx.blocking(ctx.storage.open_blob, call.name, digest)
    if reader is None:
        raise _unknown(call.name, str(digest))
    try:
        byte_range = parse_range(call.request.headers.get("range"), reader.size)
    except RangeNotSatisfiable as exc:
        reader.close()
        return empty_response(416, {"Content-Range": f"bytes */{exc.total}"})
    except BaseException:
        reader.close()
        raise
    return BlobResponse(reader, byte_range, {"Docker-Content-Digest": str(digest)})


async def delete_blob(ctx: RegistryContext, call: Call) -> Response:
    digest = parse_digest(call.reference)
    if not await ctx.blocking(ctx.storage.unlink_blob, call.name, digest):
        raise _unknown(call.name, str(digest))
    return empty_response(202, {"Docker-Content-Digest": str(digest)})
