from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from pipeline.registry.api import create_registry_app
from pipeline.registry.config import RegistryConfig
from pipeline.registry.fs import FilesystemRegistryStorage
from tests.registry.conftest import TestClient
from tests.registry.support import error_codes, push_blob, sha

pytestmark = pytest.mark.unit

API_VERSION = "registry/2.0"


def _blob_files(storage: FilesystemRegistryStorage) -> list[str]:
    return sorted(p.name for p in (storage.root / "blobs").rglob("*") if p.is_file())


def test_base_endpoint(client: TestClient) -> None:
    for path in ("/v2/", "/v2"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {}
        assert response.headers["Docker-Distribution-API-Version"] == API_VERSION


def test_monolithic_upload_then_head_and_get(client: TestClient) -> None:
    data = b"hello blob"
    digest = sha(data)
    response = client.post("/v2/apps/demo/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/apps/demo/blobs/{digest}"
    assert response.headers["Docker-Content-Digest"] == digest
    head = client.head(f"/v2/apps/demo/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.content == b""
    get = client.get(f"/v2/apps/demo/blobs/{digest}")
    assert get.status_code == 200
    assert get.content == data
    assert get.headers["Docker-Content-Digest"] == digest
    assert get.headers["Docker-Distribution-API-Version"] == API_VERSION
    # visible only in the repository it was pushed to
    assert client.head(f"/v2/apps/other/blobs/{digest}").status_code == 404


def test_post_then_put_with_the_body(client: TestClient) -> None:
    started = client.post("/v2/app/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["Location"]
    assert location.startswith("/v2/app/blobs/uploads/")
    assert started.headers["Docker-Upload-UUID"] == location.rsplit("/", 1)[1]
    assert started.headers["Range"] == "0-0"
    data = b"x" * 1000
    done = client.put(location, params={"digest": sha(data)}, content=data)
    assert done.status_code == 201
    assert client.get(f"/v2/app/blobs/{sha(data)}").content == data


def test_chunked_upload_with_content_range_and_status(client: TestClient) -> None:
    data = bytes(range(256)) * 40
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    chunks = [data[:1000], data[1000:5000], data[5000:]]
    offset = 0
    for chunk in chunks:
        response = client.patch(
            location,
            content=chunk,
            headers={
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert response.status_code == 202, response.text
        offset += len(chunk)
        assert response.headers["Range"] == f"0-{offset - 1}"
        location = response.headers["Location"]
    status = client.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{len(data) - 1}"
    assert status.headers["Docker-Upload-UUID"] in location
    assert client.put(location, params={"digest": sha(data)}).status_code == 201
    assert client.get(f"/v2/app/blobs/{sha(data)}").content == data


def test_patch_without_content_range_appends(client: TestClient) -> None:
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    assert client.patch(location, content=b"first,").headers["Range"] == "0-5"
    assert client.patch(location, content=b"second").headers["Range"] == "0-11"
    last = client.put(location, params={"digest": sha(b"first,second,third")}, content=b",third")
    assert last.status_code == 201


def test_streamed_chunked_transfer_upload(client: TestClient) -> None:
    pieces = [hashlib.sha256(str(i).encode()).digest() * 4096 for i in range(24)]  # 3 MiB

    def body() -> Iterator[bytes]:
        yield from pieces

    data = b"".join(pieces)
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    assert client.patch(location, content=body()).status_code == 202
    assert client.put(location, params={"digest": sha(data)}).status_code == 201
    assert client.head(f"/v2/app/blobs/{sha(data)}").headers["Content-Length"] == str(len(data))


def test_out_of_order_chunk_is_416(client: TestClient) -> None:
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"0123456789", headers={"Content-Range": "0-9"})
    response = client.patch(location, content=b"abc", headers={"Content-Range": "20-22"})
    assert response.status_code == 416
    assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]
    assert response.headers["Range"] == "0-9"
    assert client.get(location).headers["Range"] == "0-9"


def test_content_range_must_match_the_length(client: TestClient) -> None:
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    response = client.patch(location, content=b"abc", headers={"Content-Range": "0-9"})
    assert response.status_code == 416
    assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]
    assert client.get(location).headers["Range"] == "0-0"


def test_cancel_upload(client: TestClient, storage: FilesystemRegistryStorage) -> None:
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"data")
    assert client.delete(location).status_code == 204
    gone = client.get(location)
    assert gone.status_code == 404
    assert error_codes(gone) == ["BLOB_UPLOAD_UNKNOWN"]
    assert list((storage.root / "uploads").iterdir()) == []


@pytest.mark.parametrize(
    ("upload_id", "status", "code"),
    [
        ("0" * 32, 404, "BLOB_UPLOAD_UNKNOWN"),
        ("not-an-id", 404, "BLOB_UPLOAD_UNKNOWN"),
        # decoded to ../../etc: no endpoint has such a path
        ("..%2F..%2Fetc", 404, "UNSUPPORTED"),
    ],
)
def test_unknown_upload_ids(client: TestClient, upload_id: str, status: int, code: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = client.request(
            method, f"/v2/app/blobs/uploads/{upload_id}", params={"digest": sha(b"")}
        )
        assert response.status_code == status, (method, response.text)
        assert error_codes(response) == [code]


def test_digest_mismatch_stores_nothing(
    client: TestClient, storage: FilesystemRegistryStorage
) -> None:
    claimed = sha(b"what the client claims")
    response = client.post(
        "/v2/app/blobs/uploads/", params={"digest": claimed}, content=b"what it sent"
    )
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.head(f"/v2/app/blobs/{claimed}").status_code == 404
    assert client.head(f"/v2/app/blobs/{sha(b'what it sent')}").status_code == 404
    assert _blob_files(storage) == []
    assert list((storage.root / "uploads").iterdir()) == []

    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    client.patch(location, content=b"chunk")
    response = client.put(location, params={"digest": claimed})
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert _blob_files(storage) == []
    assert client.get(location).status_code == 404  # the session is gone too


def test_put_without_digest(client: TestClient) -> None:
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    response = client.put(location, content=b"x")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


@pytest.mark.parametrize(
    ("reference", "status", "code"),
    [
        ("sha256:1234", 400, "DIGEST_INVALID"),
        ("sha256:" + "G" * 64, 400, "DIGEST_INVALID"),
        ("md5:" + "a" * 32, 400, "DIGEST_INVALID"),
        ("latest", 400, "DIGEST_INVALID"),
        ("sha256:..%2F..%2Fx", 404, "UNSUPPORTED"),
    ],
)
def test_malformed_digests_in_urls(
    client: TestClient, reference: str, status: int, code: str
) -> None:
    for method in ("GET", "HEAD", "DELETE"):
        response = client.request(method, f"/v2/app/blobs/{reference}")
        assert response.status_code == status, (method, reference)
        assert response.headers["Docker-Distribution-API-Version"] == API_VERSION
        if method != "HEAD":
            assert error_codes(response) == [code]


def test_ranges(client: TestClient) -> None:
    data = bytes(range(100))
    digest = push_blob(client, "app", data)
    part = client.get(f"/v2/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["Content-Range"] == "bytes 10-19/100"
    assert part.headers["Content-Length"] == "10"
    tail = client.get(f"/v2/app/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert tail.content == data[-5:]
    bad = client.get(f"/v2/app/blobs/{digest}", headers={"Range": "bytes=100-200"})
    assert bad.status_code == 416
    assert bad.headers["Content-Range"] == "bytes */100"
    garbage = client.get(f"/v2/app/blobs/{digest}", headers={"Range": "pages=1-2"})
    assert garbage.status_code == 416


def test_empty_blob(client: TestClient) -> None:
    digest = push_blob(client, "app", b"")
    response = client.get(f"/v2/app/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == b""


def test_delete_blob(client: TestClient) -> None:
    digest = push_blob(client, "app", b"to delete")
    assert client.delete(f"/v2/app/blobs/{digest}").status_code == 202
    missing = client.get(f"/v2/app/blobs/{digest}")
    assert missing.status_code == 404
    assert error_codes(missing) == ["BLOB_UNKNOWN"]
    assert client.delete(f"/v2/app/blobs/{digest}").status_code == 404


def test_cross_repository_mount(client: TestClient) -> None:
    digest = push_blob(client, "base/image", b"shared layer")
    mounted = client.post("/v2/app/blobs/uploads/", params={"mount": digest, "from": "base/image"})
    assert mounted.status_code == 201
    assert mounted.headers["Location"] == f"/v2/app/blobs/{digest}"
    assert client.get(f"/v2/app/blobs/{digest}").content == b"shared layer"
    for source in ("nowhere", "../base/image", "Base"):
        fallback = client.post("/v2/other/blobs/uploads/", params={"mount": digest, "from": source})
        assert fallback.status_code == 202
        assert "/v2/other/blobs/uploads/" in fallback.headers["Location"]
    assert client.head(f"/v2/other/blobs/{digest}").status_code == 404


@pytest.mark.parametrize(
    "name",
    # httpx removes literal dot segments, so those are percent-encoded (the server decodes them)
    [
        "Upper/case",
        "a/%2E%2E/b",
        "%2E%2E/%2E%2E/etc",
        "a//b",
        "a/%2E/b",
        "-lead",
        "a" * 256,
        "x/" * 127 + "yy",
    ],
)
def test_invalid_repository_names(client: TestClient, name: str) -> None:
    response = client.post(f"/v2/{name}/blobs/uploads/")
    assert response.status_code == 400
    assert error_codes(response) == ["NAME_INVALID"]
    assert response.headers["Docker-Distribution-API-Version"] == API_VERSION


def test_unknown_paths_and_methods(client: TestClient) -> None:
    unknown = client.get("/v2/app/nothing/here")
    assert unknown.status_code == 404
    assert unknown.headers["Docker-Distribution-API-Version"] == API_VERSION
    method = client.request("PATCH", f"/v2/app/blobs/{sha(b'x')}")
    assert method.status_code == 405
    assert error_codes(method) == ["UNSUPPORTED"]
    assert "DELETE" in method.headers["Allow"]
    base = client.post("/v2/")
    assert base.status_code == 405
    assert base.headers["Allow"] == "GET, HEAD"
    catalog = client.delete("/v2/_catalog")
    assert catalog.status_code == 405
    assert catalog.headers["Docker-Distribution-API-Version"] == API_VERSION


def test_blob_size_limit(storage: FilesystemRegistryStorage) -> None:
    app = create_registry_app(storage, config=RegistryConfig(max_blob_size=10), sweep=False)
    with TestClient(app) as client:
        big = b"x" * 20
        response = client.post("/v2/app/blobs/uploads/", params={"digest": sha(big)}, content=big)
        assert response.status_code == 413
        assert error_codes(response) == ["SIZE_INVALID"]
        location = client.post("/v2/app/blobs/uploads/").headers["Location"]
        assert client.patch(location, content=b"x" * 8).status_code == 202
        assert client.patch(location, content=b"x" * 8).status_code == 413
        assert client.get(location).headers["Range"] == "0-7"
        assert push_blob(client, "app", b"small")
    assert _blob_files(storage) == [sha(b"small").split(":")[1]]


def test_lying_content_length_is_refused_before_reading(storage: FilesystemRegistryStorage) -> None:
    with TestClient(create_registry_app(storage, sweep=False)) as client:
        location = client.post("/v2/app/blobs/uploads/").headers["Location"]
        # more bytes than the disk has: refused from the header alone
        huge = str(10**18)
        response = client.patch(
            location,
            content=b"tiny",
            headers={"Content-Length": huge, "Content-Range": f"0-{10**18 - 1}"},
        )
        assert response.status_code == 413
        assert error_codes(response) == ["SIZE_INVALID"]
        assert client.get(location).headers["Range"] == "0-0"


def test_too_many_uploads(storage: FilesystemRegistryStorage) -> None:
    app = create_registry_app(storage, config=RegistryConfig(max_concurrent_uploads=0), sweep=False)
    with TestClient(app) as client:
        response = client.post("/v2/app/blobs/uploads/", params={"digest": sha(b"x")}, content=b"x")
        assert response.status_code == 429
        assert error_codes(response) == ["TOO_MANY_REQUESTS"]
        assert response.headers["Retry-After"] == "1"
    assert _blob_files(storage) == []


def test_delete_can_be_disabled(storage: FilesystemRegistryStorage) -> None:
    app = create_registry_app(storage, config=RegistryConfig(delete_enabled=False), sweep=False)
    with TestClient(app) as client:
        digest = push_blob(client, "app", b"keep")
        response = client.delete(f"/v2/app/blobs/{digest}")
        assert response.status_code == 405
        assert error_codes(response) == ["UNSUPPORTED"]
        assert client.head(f"/v2/app/blobs/{digest}").status_code == 200
