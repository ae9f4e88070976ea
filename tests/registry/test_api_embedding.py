"""The registry's routes inside a bigger application, as ``berth serve`` will use them."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from pipeline.registry.api import RegistryAPI, create_registry_app, registry_routes
from pipeline.registry.fs import FilesystemRegistryStorage
from tests.registry.conftest import TestClient
from tests.registry.support import push_image, sha

pytestmark = pytest.mark.unit


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def test_routes_included_in_another_app(storage: FilesystemRegistryStorage) -> None:
    api = RegistryAPI(storage)
    app = Starlette(routes=[Route("/health", health), *registry_routes(api)])
    with TestClient(app) as client:
        assert client.get("/health").text == "ok"
        _digest, data = push_image(client, "apps/demo", "v1")
        assert client.get("/v2/apps/demo/manifests/v1").content == data
        assert client.get("/v2/").status_code == 200
        assert client.get("/token").status_code == 404  # no token auth configured


def test_mounted_under_a_prefix_keeps_locations_right(storage: FilesystemRegistryStorage) -> None:
    outer = Starlette(routes=[Mount("/registry", app=create_registry_app(storage, sweep=False))])
    with TestClient(outer) as client:
        started = client.post("/registry/v2/app/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["Location"]
        assert location.startswith("/registry/v2/app/blobs/uploads/")
        assert client.patch(location, content=b"abc").status_code == 202
        done = client.put(
            location,
            params={"digest": sha(b"abc")},
        )
        assert done.status_code == 201
        assert done.headers["Location"].startswith("/registry/v2/app/blobs/sha256:")
        assert client.get(done.headers["Location"]).content == b"abc"
