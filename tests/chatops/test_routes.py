"""Slash commands end to end: signed requests into a Starlette app, outcomes posted to a
real local HTTP server as the response_url, state checked in the store."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette

from pipeline.chatops.commands import ChatContext, ChatReply, Dispatcher, default_registry
from pipeline.chatops.notify import Poster
from pipeline.chatops.routes import chatops_routes
from pipeline.chatops.verify import MattermostVerifier, SlackVerifier
from pipeline.promote.policy import Actor
from pipeline.store import cli_source
from tests.promote.support import (
    ENVIRON,
    MATTERMOST_TOKEN,
    SLACK_SECRET,
    Behaviour,
    Harness,
    Recorder,
    harness,
    new_release,
    recorder,
    serve_target,
    spec,
)

with warnings.catch_warnings():
    # starlette's testclient touches an alias this anyio release deprecates, at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.integration


@dataclass
class Chat:
    h: Harness
    client: TestClient
    posts: Recorder
    release: int

    def slack(
        self,
        text: str,
        user: str = "U01ALICE",
        *,
        timestamp: int | None = None,
        key: str = SLACK_SECRET,
        signature: str | None = None,
        headers: bool = True,
    ) -> tuple[int, dict[str, str]]:
        body = urllib.parse.urlencode(
            {
                "command": "/berth",
                "text": text,
                "user_id": user,
                "user_name": user.lower(),
                "team_id": "T0TEAM",
                "channel_id": "C0DEPLOYS",
                "response_url": self.posts.url + "/slack-response",
            }
        ).encode()
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        digest = hmac.new(key.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        sent = {"content-type": "application/x-www-form-urlencoded"}
        if headers:
            sent["x-slack-request-timestamp"] = stamp
            sent["x-slack-signature"] = signature or "v0=" + digest.hexdigest()
        response = self.client.post("/hooks/slack", content=body, headers=sent)
        return response.status_code, response.json()

    def mattermost(self, text: str, user: str, token: str) -> tuple[int, dict[str, str]]:
        form = {"token": token, "text": text, "user_id": user, "user_name": user,
                "team_id": "mmteam", "channel_id": "mmchan", "command": "/berth",
                "response_url": self.posts.url + "/mm-response"}  # fmt: skip
        response = self.client.post("/hooks/mattermost", data=form)
        return response.status_code, response.json()

    def state(self) -> tuple[object, ...]:
        store = self.h.store
        envs = [e.name for e in self.h.settings.environments]
        return (
            [store.get_environment("demo", e).stable_release_id for e in envs],
            [len(store.list_approvals(self.release, e)) for e in envs],
            len(store.list_events(limit=1000)),
        )


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Chat]:
    with serve_target(Behaviour()) as target, harness(tmp_path, target) as h, recorder() as posts:
        release = new_release(h.store, 1, spec()).id
        h.service.release_created("demo", release)  # runs up to pre-prod, waiting for approval
        slack = h.settings.chatops.slack
        mattermost = h.settings.chatops.mattermost
        assert slack is not None
        assert mattermost is not None
        registry = default_registry()

        def rollback(ctx: ChatContext, args: object) -> ChatReply:
            return ChatReply(f"rollback asked by {ctx.require_actor().identity}")

        registry.register("rollback", rollback, usage="rollback APP ENV", summary="Roll back.",
                          min_args=2)  # fmt: skip
        poster = Poster(attempts=2, backoff=0.01)
        routes = chatops_routes(
            Dispatcher(h.service, registry),
            poster=poster,
            slack=SlackVerifier(h.secrets[slack.signing_secret]),
            mattermost=MattermostVerifier(h.secrets[mattermost.token]),
        )
        with TestClient(Starlette(routes=routes)) as client:
            yield Chat(h, client, posts, release)
        poster.close()


def test_signed_approvals_move_the_release_and_are_recorded_with_chat_facts(chat: Chat) -> None:
    code, ack = chat.slack("approve demo pre-prod")
    assert code == 200
    assert ack["response_type"] == "ephemeral"
    assert "working on" in ack["text"]
    posted = chat.posts.wait_for(1)
    assert posted[0]["path"] == "/slack-response"
    assert posted[0]["response_type"] == "in_channel"
    assert f"alice approved demo release {chat.release} in pre-prod (1 of 1)" in posted[0]["text"]
    store = chat.h.store
    assert store.get_environment("demo", "prod").stable_release_id == chat.release
    event = store.list_events(app="demo", env="pre-prod", action="approval.added")[0]
    assert event.actor == "alice"
    assert event.source == "chat:u01alice@T0TEAM/C0DEPLOYS"
    assert event.detail["chat_user"] == "U01ALICE"
    assert event.detail["channel"] == "C0DEPLOYS"
    assert event.detail["team"] == "T0TEAM"
    # 2 of 3 in prod: one from chat, one from the CLI
    chat.slack("approve demo prod", user="U03CAROL")
    chat.posts.wait_for(2)
    assert store.list_events(app="demo", env="prod", action="gate.passed") == []
    chat.h.service.approve(Actor("bob", frozenset({"deploy"})), "demo", "prod",
                           source=cli_source("bob"))  # fmt: skip
    assert store.list_events(app="demo", env="prod", action="gate.passed")


def test_status_history_and_help(chat: Chat) -> None:
    code, ack = chat.slack("help")
    assert code == 200
    assert "/berth promote APP ENV [RELEASE]" in ack["text"]
    assert "/berth rollback" in ack["text"]
    chat.slack("status demo")
    text = chat.posts.wait_for(1)[0]["text"]
    assert f"demo/pre-prod: release {chat.release}" in text
    assert "approvals 0/1" in text
    chat.slack("history demo functional-test")
    assert "by berth: passed" in chat.posts.wait_for(2)[1]["text"]
    chat.slack("rollback demo prod")
    assert chat.posts.wait_for(3)[2]["text"] == "rollback asked by alice"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "forged-secret"}, "bad X-Slack-Signature"),
        ({"headers": False}, "missing X-Slack-Request-Timestamp"),
        ({"timestamp": int(time.time()) - 600}, "stale request"),
        ({"signature": "v0=deadbeef"}, "bad X-Slack-Signature"),
    ],
)
def test_unverified_slack_requests_change_nothing(
    chat: Chat, kwargs: dict[str, object], message: str
) -> None:
    before = chat.state()
    code, answer = chat.slack("approve demo pre-prod", **kwargs)  # type: ignore[arg-type]
    assert code == 401
    assert message in answer["error"]
    assert chat.state() == before
    assert chat.posts.attempts == 0


def test_a_replayed_request_is_refused(chat: Chat) -> None:
    stamp = int(time.time())
    assert chat.slack("status", timestamp=stamp)[0] == 200
    chat.posts.wait_for(1)
    before = chat.state()
    code, answer = chat.slack("status", timestamp=stamp)
    assert code == 401
    assert "replayed" in answer["error"]
    assert chat.state() == before


@pytest.mark.parametrize(
    ("text", "user", "reply"),
    [
        ("deploy demo", "U01ALICE", "unknown command 'deploy'; try: approve, help, history"),
        ("promote", "U01ALICE", "usage: /berth promote APP ENV [RELEASE]"),
        ("approve demo pre-prod", "U77NOBODY", "is not mapped to a berth identity"),
    ],
)
def test_bad_commands_are_answered_at_once(chat: Chat, text: str, user: str, reply: str) -> None:
    before = chat.state()
    code, answer = chat.slack(text, user=user)
    assert code == 200
    assert reply in answer["text"]
    assert chat.state() == before


@pytest.mark.parametrize(
    ("text", "user", "reply"),
    [
        ("promote nosuch prod", "U01ALICE", "unknown app 'nosuch' (berth watches: demo)"),
        ("approve demo prod", "U09MAL", "mallory is not an approver of prod"),
        ("promote demo prod", "U09MAL", "mallory may not promote into prod"),
        ("promote demo prod", "U01ALICE", "has not passed pre-prod (0 of 1 approvals)"),
        ("promote demo staging", "U01ALICE", "there is no environment staging"),
    ],
)
def test_refusals_are_posted_with_the_reason_and_change_nothing(
    chat: Chat, text: str, user: str, reply: str
) -> None:
    before = chat.state()
    assert chat.slack(text, user=user)[0] == 200
    posted = chat.posts.wait_for(1)[0]
    assert reply in posted["text"]
    assert posted["response_type"] == "ephemeral"
    assert chat.state() == before


def test_mattermost_token(chat: Chat) -> None:
    before = chat.state()
    code, answer = chat.mattermost("approve demo pre-prod", "mm-alice", "wrong-token")
    assert code == 401
    assert "wrong Mattermost command token" in answer["error"]
    code, answer = chat.mattermost("approve demo pre-prod", "mm-mallory", MATTERMOST_TOKEN)
    assert "mallory is not an approver" in chat.posts.wait_for(1)[0]["text"]
    assert chat.state() == before
    chat.mattermost("approve demo pre-prod", "mm-alice", MATTERMOST_TOKEN)
    assert "alice approved" in chat.posts.wait_for(2)[1]["text"]
    event = chat.h.store.list_events(action="approval.added")[0]
    assert event.source == "chat:mm-alice@mmteam/mmchan"


def test_secrets_appear_nowhere(chat: Chat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [chat.slack("approve demo pre-prod", key="forged")[1]]
    answers.append(chat.mattermost("status", "mm-alice", "nope")[1])
    answers.append(chat.slack("approve demo pre-prod")[1])
    answers.append(chat.slack("status")[1])
    chat.posts.wait_for(2)
    seen = repr(answers) + repr(chat.posts.posts) + caplog.text
    seen += repr(chat.h.store.list_events(limit=1000))
    for value in ENVIRON.values():
        assert value not in seen
