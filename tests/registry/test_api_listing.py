from __future__ import annotations

import re

import httpx
import pytest

from tests.registry.conftest import TestClient
from tests.registry.support import (
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    error_codes,
    image_manifest,
    push_blob,
    push_image,
    sha,
)

pytestmark = pytest.mark.unit

LINK = re.compile(r'<([^>]+)>; rel="next"')


def _follow(client: TestClient, url: str, key: str) -> tuple[list[str], int]:
    """Every item of a paginated listing, following Link headers; and the page count."""
    items: list[str] = []
    for pages in range(1, 50):
        response = client.get(url)
        assert response.status_code == 200
        items += response.json()[key]
        match = LINK.fullmatch(response.headers.get("Link", ""))
        if match is None:
            return items, pages
        url = match.group(1)
    raise AssertionError("pagination did not end within 50 pages")


def test_tags_list_pages_with_link_headers(client: TestClient) -> None:
    _digest, data = push_image(client, "apps/demo", "t00")
    tags = [f"t{i:02d}" for i in range(11)]
    for tag in tags[1:]:
        client.put(
            f"/v2/apps/demo/manifests/{tag}", content=data, headers={"Content-Type": OCI_MANIFEST}
        )
    everything = client.get("/v2/apps/demo/tags/list")
    assert everything.json() == {"name": "apps/demo", "tags": tags}
    assert "Link" not in everything.headers
    first = client.get("/v2/apps/demo/tags/list", params={"n": 4})
    assert first.json()["tags"] == tags[:4]
    assert first.headers["Link"] == '</v2/apps/demo/tags/list?n=4&last=t03>; rel="next"'
    collected, pages = _follow(client, "/v2/apps/demo/tags/list?n=4", "tags")
    assert collected == tags
    assert pages == 3
    after = client.get("/v2/apps/demo/tags/list", params={"n": 100, "last": "t08"})
    assert after.json()["tags"] == ["t09", "t10"]
    assert client.get("/v2/apps/demo/tags/list", params={"n": 0}).json()["tags"] == []


@pytest.mark.parametrize("n", ["-1", "x", "1e3"])
def test_invalid_page_size_is_400(client: TestClient, n: str) -> None:
    push_image(client, "app", "v1")
    response = client.get("/v2/app/tags/list", params={"n": n})
    assert response.status_code == 400
    assert error_codes(response) == ["PAGINATION_NUMBER_INVALID"]


def test_tags_of_an_unknown_repository(client: TestClient) -> None:
    response = client.get("/v2/nothing/here/tags/list")
    assert response.status_code == 404
    assert error_codes(response) == ["NAME_UNKNOWN"]


def test_catalog(client: TestClient) -> None:
    names = ["a", "b/c", "b/c/d", "e-f", "g.h"]
    for name in names:
        push_blob(client, name, name.encode())
    assert client.get("/v2/_catalog").json() == {"repositories": names}
    page = client.get("/v2/_catalog", params={"n": 2, "last": "b/c"})
    assert page.json()["repositories"] == ["b/c/d", "e-f"]
    assert (
        page.headers["Link"]
        == f'<{httpx.URL("/v2/_catalog", params={"n": 2, "last": "e-f"})}>; rel="next"'
    )
    collected, _ = _follow(client, "/v2/_catalog?n=2", "repositories")
    assert collected == names


def _push_referrer(client: TestClient, subject: bytes, artifact_type: str, payload: bytes) -> str:
    push_blob(client, "app", b"{}")
    push_blob(client, "app", payload)
    data = image_manifest(
        b"{}",
        [payload],
        subject=descriptor(subject, OCI_MANIFEST),
        artifact_type=artifact_type,
        annotations={"org.example.kind": artifact_type},
    )
    response = client.put(
        f"/v2/app/manifests/{sha(data)}", content=data, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 201
    return sha(data)


def test_referrers_with_and_without_a_filter(client: TestClient) -> None:
    subject_digest, subject = push_image(client, "app", "v1")
    signature = _push_referrer(client, subject, "application/x.signature", b"sig")
    sbom = _push_referrer(client, subject, "application/spdx+json", b"sbom")
    response = client.get(f"/v2/app/referrers/{subject_digest}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in response.headers
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {signature, sbom}
    assert by_digest[sbom]["artifactType"] == "application/spdx+json"
    assert by_digest[sbom]["mediaType"] == OCI_MANIFEST
    assert by_digest[sbom]["annotations"] == {"org.example.kind": "application/spdx+json"}
    assert by_digest[sbom]["size"] == len(client.get(f"/v2/app/manifests/{sbom}").content)

    filtered = client.get(
        f"/v2/app/referrers/{subject_digest}", params={"artifactType": "application/x.signature"}
    )
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [signature]

    client.delete(f"/v2/app/manifests/{signature}")
    remaining = client.get(f"/v2/app/referrers/{subject_digest}").json()["manifests"]
    assert [m["digest"] for m in remaining] == [sbom]


def test_referrers_of_unknown_subjects_are_an_empty_index(client: TestClient) -> None:
    for repo in ("app", "never/pushed"):
        response = client.get(f"/v2/{repo}/referrers/{sha(b'nothing')}")
        assert response.status_code == 200
        assert response.json()["manifests"] == []
    bad = client.get("/v2/app/referrers/sha256:nope")
    assert bad.status_code == 400
    assert error_codes(bad) == ["DIGEST_INVALID"]
