"""Operations of the REST API, declared once: they make both the routes and the OpenAPI
3.1 document (``GET /api/v1/openapi.json``).

An :class:`Operation` names its path, method, scope, parameters, request body model and
response models; :func:`openapi_document` turns the list into the document, with every
pydantic model's JSON Schema under ``components/schemas``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.models import ErrorBody

Handler = Callable[[Request, Any], Awaitable[Response]]

_REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "Invalid parameters or body",
    401: "No token, or an unknown token",
    403: "The token's scope is too small",
    404: "No such object",
    409: "The object is in a state that does not allow this",
    502: "The app's git repository could not be reached",
}


@dataclass(frozen=True)
class Param:
    """A path or query parameter."""

    name: str
    location: str  # "path" | "query"
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One method on one path."""

    method: str
    path: str
    operation_id: str
    summary: str
    scope: str | None
    handler: Handler
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    ok: int = 200
    response: type[BaseModel] | str | None = None
    """A model, or a media type for non-JSON answers (``text/plain``)."""
    errors: tuple[int, ...] = field(default=())
    also_ok: tuple[int, ...] = ()
    """Other success statuses with the same body (e.g. 200 when nothing new was queued)."""


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    doc = model.model_json_schema(ref_template=_REF, mode="serialization")
    for name, definition in doc.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = doc
    return {"$ref": _REF.format(model=model.__name__)}


def openapi_document(operations: Sequence[Operation], *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``operations``."""
    components: dict[str, Any] = {}
    error_ref = _schema(ErrorBody, components)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "parameters": [
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required or p.location == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.params
            ],
            "responses": {},
        }
        if op.scope is not None:
            entry["security"] = [{"bearer": [op.scope]}]
            entry["description"] = f"Needs a token with scope {op.scope} (or a wider one)."
        else:
            entry["security"] = []
        if op.body is not None:
            entry["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": _schema(op.body, components)}},
            }
        if isinstance(op.response, str):
            content = {op.response: {"schema": {"type": "string"}}}
        elif op.response is not None:
            content = {"application/json": {"schema": _schema(op.response, components)}}
        else:
            content = {"application/json": {"schema": {"type": "object"}}}
        entry["responses"][str(op.ok)] = {"description": "Success", "content": content}
        for code in op.also_ok:
            entry["responses"][str(code)] = {"description": "Success", "content": content}
        codes = set(op.errors) | ({401, 403} if op.scope is not None else set())
        for code in sorted(codes):
            entry["responses"][str(code)] = {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "berth control plane API",
            "version": version,
            "description": "Apps, builds, build logs, releases and the audit log of berth.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from api_tokens in the service config",
                }
            },
        },
    }
