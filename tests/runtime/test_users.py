"""USER strings resolved against an image's /etc/passwd and /etc/group, purely."""

from __future__ import annotations

import pytest

from runners.runtime.users import ProcessUser, UserError, resolve_user

pytestmark = pytest.mark.unit

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nwww:x:33:\nlog:x:4:www\nshadow:x:42:\n"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", ProcessUser(0, 0, (), "/root")),
        ("0", ProcessUser(0, 0, (), "/root")),
        ("www", ProcessUser(33, 33, (4,), "/var/www")),
        ("33", ProcessUser(33, 33, (4,), "/var/www")),
        ("www:42", ProcessUser(33, 42, (4,), "/var/www")),
        ("www:shadow", ProcessUser(33, 42, (4,), "/var/www")),
        ("www:log", ProcessUser(33, 4, (), "/var/www")),
        ("5000", ProcessUser(5000, 0, (), "/")),
        ("5000:5000", ProcessUser(5000, 5000, (), "/")),
    ],
)
def test_resolution(spec: str, expected: ProcessUser) -> None:
    assert resolve_user(spec, PASSWD, GROUP) == expected


def test_numeric_ids_need_no_files() -> None:
    assert resolve_user("1000:1000") == ProcessUser(1000, 1000)


def test_names_need_the_files() -> None:
    with pytest.raises(UserError, match=r"user 'www' .* not found in an image without /etc/passwd"):
        resolve_user("www")
    with pytest.raises(UserError, match=r"group 'log' .* not found in an image without /etc/group"):
        resolve_user("0:log", PASSWD)


def test_unknown_group_is_named() -> None:
    with pytest.raises(
        UserError, match=r"group 'nope' \(USER 'www:nope'\) not found in the image's /etc/group"
    ):
        resolve_user("www:nope", PASSWD, GROUP)


def test_ids_beyond_32_bits_are_refused() -> None:
    with pytest.raises(UserError, match="larger than"):
        resolve_user("4294967296")
