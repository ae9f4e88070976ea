"""Image references: Docker Hub defaults, hosts, tags, digests, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runners.errors import DigestError, ReferenceError_
from runners.oci.digest import Digest
from runners.oci.reference import Reference, valid_tag

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("team/app", "docker.io", "team/app", "latest", None),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/x", "localhost:5000", "x", "latest", None),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000", "a/b/c", "v1", None),
        (
            "registry.example.com/team/app:v1.2-rc_3",
            "registry.example.com",
            "team/app",
            "v1.2-rc_3",
            None,
        ),
        (f"ghcr.io/org/app@{DIGEST}", "ghcr.io", "org/app", None, DIGEST),
        (f"ghcr.io/org/app:v1@{DIGEST}", "ghcr.io", "org/app", "v1", DIGEST),
        ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", None),
        ("Example/app", "Example", "app", "latest", None),
        ("a-b__c/d.e", "docker.io", "a-b__c/d.e", "latest", None),
        ("a.b/c", "a.b", "c", "latest", None),
    ],
)
def test_parse(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert ref.digest == (Digest.parse(digest) if digest else None)


def test_docker_hub_is_spoken_to_on_its_api_host() -> None:
    assert Reference.parse("busybox").api_host == "registry-1.docker.io"
    assert Reference.parse("localhost:5000/x").api_host == "localhost:5000"


def test_identifier_prefers_the_digest() -> None:
    assert Reference.parse(f"h.io/a:v1@{DIGEST}").identifier == DIGEST
    assert Reference.parse("h.io/a:v1").identifier == "v1"


def test_str_is_fully_qualified() -> None:
    assert str(Reference.parse("busybox")) == "docker.io/library/busybox:latest"
    assert str(Reference.parse(f"h.io/a@{DIGEST}")) == f"h.io/a@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        (" busybox", "spaces"),
        ("h.io/Team/app", "lower-case"),
        ("h.io/app:-bad", "tag '-bad'"),
        ("h.io/app:" + "x" * 129, "tag"),
        ("h.io/app@sha256:123", "expected 64"),
        ("h.io/app@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("h.io//app", "repository"),
        ("h.io/app-", "repository"),
        ("bad_host.io:5000/app", "bad host"),
        ("h.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_invalid_references_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ReferenceError_) as caught:
        Reference.parse(text)
    assert complaint in str(caught.value)
    assert repr(text) in str(caught.value)


component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
hosts = st.one_of(
    st.just("localhost"),
    st.builds(
        lambda a, b: f"{a}.{b}",
        st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True),
        st.sampled_from(["io", "com", "test"]),
    ),
    st.builds(lambda p: f"127.0.0.1:{p}", st.integers(1, 65535)),
    st.builds(lambda p: f"[::1]:{p}", st.integers(1, 65535)),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digests = st.binary(min_size=1, max_size=8).map(Digest.of)


@given(
    host=hosts,
    path=st.lists(component, min_size=1, max_size=3),
    tag=st.one_of(st.none(), tags),
    digest=st.one_of(st.none(), digests),
)
def test_round_trip(host: str, path: list[str], tag: str | None, digest: Digest | None) -> None:
    text = f"{host}/{'/'.join(path)}"
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    ref = Reference.parse(text)
    assert ref.registry == host
    assert ref.repository == "/".join(path)
    assert ref.tag == (tag if tag is not None or digest is not None else "latest")
    assert ref.digest == digest
    assert Reference.parse(str(ref)) == ref


# Without "." or ":" in the first component a name is on Docker Hub.
hub_component = st.from_regex(r"[a-z0-9]{1,8}(?:(?:_|__|-+)[a-z0-9]{1,8}){0,2}", fullmatch=True)


@given(name=st.lists(hub_component, min_size=1, max_size=2), tag=st.one_of(st.none(), tags))
def test_short_names_normalise_once(name: list[str], tag: str | None) -> None:
    text = "/".join(name) + (f":{tag}" if tag else "")
    ref = Reference.parse(text)
    assert ref.registry == "docker.io"
    expected = "/".join(name) if len(name) > 1 else f"library/{name[0]}"
    assert ref.repository == expected
    assert Reference.parse(str(ref)) == ref


def test_a_trailing_newline_is_not_part_of_a_valid_name() -> None:
    with pytest.raises(DigestError):
        Digest.parse("sha256:" + "a" * 64 + "\n")
    with pytest.raises(ReferenceError_):
        Reference.parse("registry.example/app:v1\n")
    with pytest.raises(ReferenceError_):
        Reference.parse("registry.example/app\n")
    assert not valid_tag("v1\n")
