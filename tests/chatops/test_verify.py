"""Slack signatures (forged, missing, stale, replayed) and Mattermost tokens."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pipeline.chatops.verify import ChatAuthError, MattermostVerifier, SlackVerifier
from pipeline.secrets import Secret, SecretSource

pytestmark = pytest.mark.unit

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000
BODY = b"command=%2Fberth&text=status&user_id=U1&team_id=T1&channel_id=C1"


def secret(value: str) -> Secret:
    return Secret(value, SecretSource(env="CHAT_SECRET"))


def sign(timestamp: str, body: bytes, key: str = SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(key.encode(), base, hashlib.sha256).hexdigest()


def verifier(now: float = NOW) -> SlackVerifier:
    return SlackVerifier(secret(SECRET), clock=lambda: now)


def test_a_signed_request_is_accepted_once() -> None:
    slack = verifier()
    signature = sign(str(NOW), BODY)
    assert slack.signature(str(NOW), BODY) == signature
    slack.verify(str(NOW), signature, BODY)
    with pytest.raises(ChatAuthError, match="replayed request"):
        slack.verify(str(NOW), signature, BODY)


@pytest.mark.parametrize(
    ("timestamp", "signature", "message"),
    [
        (None, sign(str(NOW), BODY), "missing X-Slack-Request-Timestamp"),
        (str(NOW), None, "missing X-Slack-Signature"),
        ("yesterday", sign("yesterday", BODY), "not a Unix time"),
        (str(NOW - 301), sign(str(NOW - 301), BODY), "stale request"),
        (str(NOW + 400), sign(str(NOW + 400), BODY), "stale request"),
        (str(NOW), sign(str(NOW), BODY, key="guessed"), "bad X-Slack-Signature"),
        (str(NOW), sign(str(NOW), BODY + b"&x=1"), "bad X-Slack-Signature"),
        (str(NOW), "v0=" + "0" * 64, "bad X-Slack-Signature"),
    ],
)
def test_bad_signatures_are_refused(
    timestamp: str | None, signature: str | None, message: str
) -> None:
    with pytest.raises(ChatAuthError, match=message) as refused:
        verifier().verify(timestamp, signature, BODY)
    assert SECRET not in str(refused.value)


def test_replays_are_remembered_only_within_the_window() -> None:
    clock = [float(NOW)]
    slack = SlackVerifier(secret(SECRET), clock=lambda: clock[0])
    first = sign(str(NOW), BODY)
    slack.verify(str(NOW), first, BODY)
    clock[0] += 200  # still inside the window: the same request is a replay
    with pytest.raises(ChatAuthError, match="replayed"):
        slack.verify(str(NOW), first, BODY)
    clock[0] += 200  # outside it: refused as stale, however it was signed
    with pytest.raises(ChatAuthError, match="stale"):
        slack.verify(str(NOW), first, BODY)
    later = str(int(clock[0]))
    slack.verify(later, sign(later, BODY), BODY)


def test_mattermost_tokens() -> None:
    mattermost = MattermostVerifier(secret("mm-token-value"))
    mattermost.verify("mm-token-value")
    mattermost.verify(None, "Token mm-token-value")
    with pytest.raises(ChatAuthError, match="wrong Mattermost command token"):
        mattermost.verify("mm-token-valuf")
    with pytest.raises(ChatAuthError, match="missing"):
        mattermost.verify(None)
