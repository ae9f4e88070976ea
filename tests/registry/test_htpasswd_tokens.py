from __future__ import annotations

import os
from pathlib import Path

import bcrypt
import jwt
import pytest

from pipeline.errors import ConfigError, RegistryServerError
from pipeline.registry.access import Access
from pipeline.registry.clock import ManualClock
from pipeline.registry.htpasswd import Htpasswd, parse_htpasswd
from pipeline.registry.tokens import InvalidToken, TokenSigner, load_or_create_key

pytestmark = pytest.mark.unit

KEY = b"k" * 40


def _bcrypt_2y(password: str) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return "$2y$" + hashed[4:]


def test_htpasswd_accepts_apache_2y_hashes(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"# users\nalice:{_bcrypt_2y('s3cret')}\n\n")
    users = Htpasswd(path)
    assert users.users == ["alice"]
    assert users.verify("alice", "s3cret")
    assert users.verify("alice", "s3cret")  # second time from the cache
    assert not users.verify("alice", "wrong")
    assert not users.verify("bob", "s3cret")


def test_htpasswd_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{_bcrypt_2y('one')}\n")
    users = Htpasswd(path)
    assert users.verify("alice", "one")
    path.write_text(f"alice:{_bcrypt_2y('two')}\nbob:{_bcrypt_2y('b')}\n")
    os.utime(path, ns=(1, 1))  # a different stamp even within one mtime tick
    assert not users.verify("alice", "one")
    assert users.verify("alice", "two")
    assert users.verify("bob", "b")


def test_htpasswd_refuses_weak_hashes_with_line_numbers() -> None:
    text = "md5user:$apr1$abc$def\nshauser:{SHA}xyz\nnocolon\n"
    with pytest.raises(ConfigError) as info:
        parse_htpasswd(text, "users")
    lines = [(p.line, p.message) for p in info.value.problems]
    assert lines[0] == (1, "only bcrypt hashes are accepted; recreate the entry with `htpasswd -B`")
    assert [line for line, _ in lines] == [1, 2, 3]


def test_token_round_trip_and_expiry() -> None:
    clock = ManualClock()
    signer = TokenSigner(KEY, service="berth", ttl=60, clock=clock)
    access = [Access.repository("apps/demo", "pull", "push")]
    issued = signer.issue("alice", access)
    assert issued.to_json()["token"] == issued.to_json()["access_token"]
    assert issued.to_json()["expires_in"] == 60
    claims = signer.verify(issued.token)
    assert claims.subject == "alice"
    assert claims.access == tuple(access)
    clock.advance(64)  # inside the leeway
    assert signer.verify(issued.token).subject == "alice"
    clock.advance(10)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(issued.token)


def test_forged_and_foreign_tokens_are_rejected() -> None:
    clock = ManualClock()
    signer = TokenSigner(KEY, clock=clock)
    good = signer.issue("alice", [])
    payload = jwt.decode(good.token, options={"verify_signature": False})
    forged = jwt.encode(payload, b"x" * 40, algorithm="HS256")
    with pytest.raises(InvalidToken):
        signer.verify(forged)
    other_service = TokenSigner(KEY, service="elsewhere", clock=clock).issue("alice", [])
    with pytest.raises(InvalidToken):
        signer.verify(other_service.token)
    unsigned = jwt.encode(payload, None, algorithm="none")
    with pytest.raises(InvalidToken):
        signer.verify(unsigned)
    with pytest.raises(InvalidToken):
        signer.verify("not.a.token")


def test_anonymous_token_has_no_subject() -> None:
    signer = TokenSigner(KEY, clock=ManualClock())
    assert signer.verify(signer.issue(None, []).token).subject is None


def test_key_file_is_created_once_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    first = load_or_create_key(path)
    assert len(first) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == first


def test_short_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.write_bytes(b"short")
    with pytest.raises(RegistryServerError, match="shorter than 32"):
        load_or_create_key(path)
