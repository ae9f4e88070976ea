"""Reading registry answers: errors, pagination links, upload locations, ranges."""

from __future__ import annotations

import json

import pytest

from runners.errors import RegistryAuthError, RegistryError, RegistryNotFound, RegistryUnavailable
from runners.oci.responses import (
    content_range_start,
    error_details,
    next_link,
    registry_error,
    resolve_location,
    retry_after,
    with_query,
)
from runners.oci.session import is_loopback

pytestmark = pytest.mark.unit

BODY = json.dumps(
    {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
).encode()


def test_error_details() -> None:
    assert [d.code for d in error_details(BODY)] == ["MANIFEST_UNKNOWN"]
    assert error_details(b"<html>") == []
    assert error_details(b'{"errors": "x"}') == []


def test_401_without_credentials_says_how_to_authenticate() -> None:
    error = registry_error(401, b"", host="127.0.0.1:5000", what="push", had_credentials=False)
    assert isinstance(error, RegistryAuthError)
    assert str(error).startswith(
        "registry 127.0.0.1:5000 requires authentication for push: pass --creds USER:PASS or log in"
    )


def test_401_with_credentials_says_they_were_refused() -> None:
    error = registry_error(401, BODY, host="h:1", what="push", had_credentials=True)
    assert "refused the credentials" in str(error)
    assert error.status == 401


def test_other_statuses() -> None:
    missing = registry_error(404, BODY, host="h:1", what="manifest h:1/a:v1", had_credentials=False)
    assert isinstance(missing, RegistryNotFound)
    assert (
        str(missing) == "manifest h:1/a:v1: not found on h:1 (MANIFEST_UNKNOWN: manifest unknown)"
    )
    assert missing.code == "MANIFEST_UNKNOWN"
    assert isinstance(
        registry_error(403, b"", host="h", what="x", had_credentials=True), RegistryAuthError
    )
    assert "storage.delete.enabled" in str(
        registry_error(405, b"", host="h", what="x", had_credentials=False)
    )
    assert isinstance(
        registry_error(503, b"", host="h", what="x", had_credentials=False), RegistryUnavailable
    )
    teapot = registry_error(418, b"short and stout", host="h", what="x", had_credentials=False)
    assert type(teapot) is RegistryError
    assert str(teapot) == "registry h answered 418 to x: short and stout"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('</v2/a/tags/list?n=2&last=b>; rel="next"', "http://h:1/v2/a/tags/list?n=2&last=b"),
        ("<http://other:2/next>; rel=next", "http://other:2/next"),
        (
            '</prev>; rel="prev", </v2/a/tags/list?last=c>; rel="next"',
            "http://h:1/v2/a/tags/list?last=c",
        ),
        ('</x>; rel="prev"', None),
        (None, None),
        ("garbage", None),
    ],
)
def test_next_link(header: str | None, expected: str | None) -> None:
    assert next_link(header, "http://h:1/v2/a/tags/list?n=2") == expected


def test_locations_and_queries() -> None:
    base = "http://h:1/v2/a/blobs/uploads/"
    assert (
        resolve_location(base, "/v2/a/blobs/uploads/u1?_state=xyz", what="x")
        == "http://h:1/v2/a/blobs/uploads/u1?_state=xyz"
    )
    assert resolve_location(base, "https://cdn.test/u", what="x") == "https://cdn.test/u"
    with pytest.raises(RegistryError, match="no Location header for upload"):
        resolve_location(base, None, what="upload")
    assert (
        with_query("http://h/u?_state=a%3D%3D", digest="sha256:1")
        == "http://h/u?_state=a%3D%3D&digest=sha256%3A1"
    )
    assert with_query("http://h/u?digest=old", digest="new") == "http://h/u?digest=new"


def test_content_range_and_retry_after() -> None:
    assert content_range_start("bytes 100-199/200") == 100
    assert content_range_start("bytes 0-0/*") == 0
    assert content_range_start("100-199") is None
    assert content_range_start(None) is None
    assert retry_after("3", 8.0) == 3.0
    assert retry_after("120", 8.0) == 8.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 8.0) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
        ("localhost.example.com:5000", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
