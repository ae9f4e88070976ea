"""Listings: ``/v2/NAME/tags/list``, ``/v2/_catalog`` and ``/v2/NAME/referrers/DIGEST``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pipeline.registry.api.context import Call, RegistryContext
from pipeline.registry.api.responses import json_response
from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.names import parse_digest
from pipeline.registry.paging import link_header, paginate, parse_page_size
from runners.oci import mediatypes


def _page(
    ctx: RegistryContext, request: Request, items: list[str], path: str
) -> tuple[list[str], dict[str, str]]:
    n = parse_page_size(request.query_params.get("n"), ctx.config.max_page)
    page = paginate(items, n, request.query_params.get("last"))
    headers: dict[str, str] = {}
    if page.next_last is not None and n is not None:
        headers["Link"] = link_header(ctx.url(request, path), n, page.next_last)
    return list(page.items), headers


async def list_tags(ctx: RegistryContext, call: Call) -> Response:
    tags = await ctx.blocking(ctx.storage.tags, call.name)
    if tags is None:
        raise DistributionError(ErrorCode.NAME_UNKNOWN, {"repository": call.name})
    items, headers = _page(ctx, call.request, tags, f"/v2/{call.name}/tags/list")
    return json_response({"name": call.name, "tags": items}, headers=headers)


async def catalog(ctx: RegistryContext, request: Request) -> Response:
    names = await ctx.blocking(ctx.storage.repositories)
    items, headers = _page(ctx, request, names, "/v2/_catalog")
    return json_response({"repositories": items}, headers=headers)


async def list_referrers(ctx: RegistryContext, call: Call) -> Response:
    subject = parse_digest(call.reference)
    descriptors = await ctx.blocking(ctx.storage.referrers, call.name, subject)
    headers: dict[str, str] = {}
    wanted = call.request.query_params.get("artifactType")
    if wanted:
        descriptors = [d for d in descriptors if d.artifact_type == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [d.to_json() for d in descriptors],
    }
    return json_response(index, headers=headers, media_type=mediatypes.OCI_INDEX)
