"""``HEAD``/``GET``/``PUT``/``DELETE /v2/NAME/manifests/REFERENCE`` (a tag or a digest)."""

from __future__ import annotations

from starlette.responses import Response

from pipeline.registry.api.context import Call, RegistryContext, read_limited
from pipeline.registry.api.responses import bytes_response, empty_response
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.manifests import manifest_too_large, parse_manifest
from pipeline.registry.names import is_valid_tag, parse_digest
from runners.oci.digest import Digest


def _reference(call: Call, *, for_push: bool = False) -> str | Digest:
    """The tag or digest in the URL; a malformed one is refused the way the spec expects."""
    if ":" in call.reference:
        return parse_digest(call.reference)
    if is_valid_tag(call.reference):
        return call.reference
    if for_push:
        raise DistributionError(
            ErrorCode.MANIFEST_INVALID,
            {"reason": f"invalid tag {call.reference!r}: use [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"},
        )
    raise _unknown(call)


def _unknown(call: Call) -> DistributionError:
    return DistributionError(
        ErrorCode.MANIFEST_UNKNOWN, {"repository": call.name, "reference": call.reference}
    )


async def get_manifest(ctx: RegistryContext, call: Call) -> Response:
    reference = _reference(call)
    stored = await ctx.blocking(ctx.storage.get_manifest, call.name, reference)
    if stored is None:
        raise _unknown(call)
    headers = {"Docker-Content-Digest": str(stored.digest)}
    if call.request.method == "HEAD":
        headers["Content-Length"] = str(len(stored.data))
        headers["Content-Type"] = stored.media_type
        return empty_response(200, headers)
    return bytes_response(stored.data, stored.media_type, headers)


async def put_manifest(ctx: RegistryContext, call: Call) -> Response:
    reference = _reference(call, for_push=True)
    limit = ctx.config.max_manifest_size
    data = await read_limited(call.request, limit, lambda _size: manifest_too_large(limit))
    parsed = parse_manifest(data, call.request.headers.get("content-type"), limit)
    if isinstance(reference, Digest):
        actual = Digest.of(data, reference.algorithm)
        if actual != reference:
            raise DistributionError(
                ErrorCode.DIGEST_INVALID,
                {"expected": str(reference), "actual": str(actual)},
            )
        digest, tag = reference, None
    else:
        digest, tag = Digest.of(data), reference
    await ctx.blocking(ctx.storage.put_manifest, call.name, data, parsed, digest, tag)
    headers = {
        "Location": ctx.url(call.request, f"/v2/{call.name}/manifests/{digest}"),
        "Docker-Content-Digest": str(digest),
    }
    if parsed.subject is not None:
        headers["OCI-Subject"] = str(parsed.subject.digest)
    return empty_response(201, headers)


async def delete_manifest(ctx: RegistryContext, call: Call) -> Response:
    reference = _reference(call)
    if isinstance(reference, Digest):
        deleted = await ctx.blocking(ctx.storage.delete_manifest, call.name, reference)
    else:
        deleted = await ctx.blocking(ctx.storage.delete_tag, call.name, reference)
    if not deleted:
        raise _unknown(call)
    return empty_response(202)
