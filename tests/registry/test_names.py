from __future__ import annotations

import pytest

from pipeline.registry.errors import DistributionError, ErrorCode
from pipeline.registry.names import (
    APIPath,
    Endpoint,
    check_name,
    is_valid_name,
    is_valid_tag,
    parse_api_path,
    parse_digest,
)

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "name",
    [
        "app",
        "apps/demo",
        "a/b/c/d",
        "my-app",
        "my--app",
        "my_app",
        "my__app",
        "v1.2",
        "0/1",
        "a" * 255,
    ],
)
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "App",
        "apps//demo",
        "/apps",
        "apps/",
        "..",
        "apps/../etc",
        "../etc/passwd",
        "a/./b",
        "my___app",
        "-app",
        "app-",
        "a b",
        "a" * 256,
        "apps/_layers",
        "a%2fb",
    ],
)
def test_invalid_names_are_name_invalid(name: str) -> None:
    assert not is_valid_name(name)
    with pytest.raises(DistributionError) as info:
        check_name(name)
    assert info.value.code is ErrorCode.NAME_INVALID
    assert info.value.status == 400


def test_overlong_name_message_gives_the_limit() -> None:
    with pytest.raises(DistributionError) as info:
        check_name("a" * 300)
    assert "255" in str(info.value)


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A" * 128, "1-2_3.4"])
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)


@pytest.mark.parametrize("tag", ["", ".hidden", "-x", "a" * 129, "a/b", "a:b", "../x"])
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", APIPath(Endpoint.BASE)),
        ("_catalog", APIPath(Endpoint.CATALOG)),
        (f"app/blobs/{DIGEST}", APIPath(Endpoint.BLOB, "app", DIGEST)),
        (f"a/b/c/blobs/{DIGEST}", APIPath(Endpoint.BLOB, "a/b/c", DIGEST)),
        ("a/b/blobs/uploads/", APIPath(Endpoint.UPLOAD, "a/b", "")),
        ("a/b/blobs/uploads", APIPath(Endpoint.UPLOAD, "a/b", "")),
        ("a/b/blobs/uploads/0123", APIPath(Endpoint.UPLOAD, "a/b", "0123")),
        ("a/b/manifests/latest", APIPath(Endpoint.MANIFEST, "a/b", "latest")),
        ("a/b/tags/list", APIPath(Endpoint.TAGS, "a/b")),
        (f"a/b/referrers/{DIGEST}", APIPath(Endpoint.REFERRERS, "a/b", DIGEST)),
        # names may contain the endpoint words as components
        ("blobs/manifests/manifests/v1", APIPath(Endpoint.MANIFEST, "blobs/manifests", "v1")),
        (f"x/blobs/y/blobs/{DIGEST}", APIPath(Endpoint.BLOB, "x/blobs/y", DIGEST)),
        ("tags/list/tags/list", APIPath(Endpoint.TAGS, "tags/list")),
    ],
)
def test_parse_api_path(path: str, expected: APIPath) -> None:
    assert parse_api_path(path) == expected


@pytest.mark.parametrize("path", ["app", "app/blobs", "app/manifests/", "app/tags", "app/other/x"])
def test_unknown_paths(path: str) -> None:
    assert parse_api_path(path) is None


@pytest.mark.parametrize(
    "text", ["sha256:abc", "sha256:" + "AB" * 32, "md5:" + "ab" * 16, "nope", "sha256:../../etc"]
)
def test_bad_digests_are_digest_invalid(text: str) -> None:
    with pytest.raises(DistributionError) as info:
        parse_digest(text)
    assert info.value.code is ErrorCode.DIGEST_INVALID
