"""The issue-8 story on a live control plane: a pushed commit is built, its release
enters dev by itself and travels through all five environments — gates passing on the
way, approvals given through the CLI and through a signed Slack request. Releases switch
at once here (no hosts); the rollout engine's own tests cover the hosts."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any

import pytest

from pipeline.cli.main import main
from tests.control.support import PUSH_PAYLOADS, TOKENS, signed
from tests.deploy_api.conftest import DB_PASSWORD, SLACK_SECRET, Deploy
from tests.helpers.procs import wait_until
from tests.promote.support import recorder

pytestmark = pytest.mark.integration

BERTH_YML = """\
run: {port: 8080}
tests:
  functional:
    command: [sh, -c, 'test -n "$BERTH_TARGET_URL" && echo functional ok']
    timeout: 20s
  perf: {requests: 20, concurrency: 4, max_p95_latency: 2s, max_error_rate: 5%}
"""


def _slack(deploy: Deploy, user: str, text: str, response_url: str) -> Any:
    body = urllib.parse.urlencode(
        {
            "command": "/berth",
            "text": text,
            "user_id": user,
            "user_name": user.lower(),
            "team_id": "T01",
            "channel_id": "C01",
            "response_url": response_url,
        }
    ).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(SLACK_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    headers = {
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": "v0=" + mac.hexdigest(),
        "content-type": "application/x-www-form-urlencoded",
    }
    with deploy.server.client() as http:
        return http.post("/hooks/slack", content=body, headers=headers)


def _cli(
    deploy: Deploy, capsys: pytest.CaptureFixture[str], who: str, *args: str
) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*args, "--server", deploy.server.url, "--token", TOKENS[who]])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _stable(deploy: Deploy, env: str) -> int | None:
    return deploy.store.get_environment("demo", env).stable_release_id


def test_a_good_commit_travels_through_all_five_environments(
    deploy: Deploy, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = deploy.repo.commit({"berth.yml": BERTH_YML, "index.html": "hello\n"}, "first page")
    body, headers = signed("github", PUSH_PAYLOADS["github"](deploy.repo.url, sha))
    with deploy.server.client() as http:
        assert http.post("/hooks/github", content=body, headers=headers).status_code == 202
    wait_until(lambda: deploy.store.find_release("demo", sha) is not None, timeout=60)
    release = deploy.store.find_release("demo", sha)
    assert release is not None
    # dev -> functional-test -> perf-test by themselves; pre-prod waits for an approval
    wait_until(lambda: _stable(deploy, "pre-prod") == release.id, timeout=60)
    code, out = _cli(deploy, capsys, "reader", "status", "demo")
    assert code == 0
    assert "approval: pending (0/1 approvals)" in out, out

    code, out = _cli(deploy, capsys, "deployer", "approve", "demo", "pre-prod")
    assert code == 0, out
    wait_until(lambda: _stable(deploy, "prod") == release.id, timeout=30)

    with recorder() as chat:
        # mallory is mapped but not an approver in prod: refused, nothing recorded
        ack = _slack(deploy, "U09MAL", "approve demo prod", chat.url + "/r1")
        assert ack.status_code == 200
        [refusal] = chat.wait_for(1)
        assert "mallory" in refusal["text"], refusal
        code, out = _cli(deploy, capsys, "deployer", "approve", "demo", "prod")
        assert code == 0, out
        ack = _slack(deploy, "U01ALICE", "approve demo prod", chat.url + "/r2")
        assert ack.status_code == 200
        posts = chat.wait_for(2)
        assert posts[1]["response_type"] == "in_channel", posts
        # the rollout commands are registered with the same dispatcher
        _slack(deploy, "U01ALICE", "abort demo prod", chat.url + "/r3")
        aborted = chat.wait_for(3)[2]
        assert "no rollout is in progress" in aborted["text"], aborted
        help_answer = _slack(deploy, "U01ALICE", "help", "").json()
    for verb in ("rollback APP ENV", "abort APP ENV", "resume APP ENV", "retry APP ENV"):
        assert verb in help_answer["text"]

    approvals = deploy.store.list_approvals(release.id, "prod")
    assert sorted(a.approver for a in approvals) == ["alice", "deployer"]
    wait_until(
        lambda: any(
            e.action == "gate.passed"
            for e in deploy.store.list_events(app="demo", env="prod", release_id=release.id)
        ),
        timeout=30,
    )
    code, out = _cli(deploy, capsys, "reader", "history", "demo", "prod", "--json")
    assert code == 0, out
    [entry] = json.loads(out)
    assert (entry["release"], entry["from_env"], entry["outcome"]) == (
        release.id,
        "pre-prod",
        "passed",
    )
    events = deploy.store.list_events(app="demo", limit=1000)
    entered = [e.env for e in events if e.action == "release.entered"]
    assert entered == ["dev", "functional-test", "perf-test", "pre-prod", "prod"]
    chat_approval = [e for e in events if e.action == "approval.added" and e.actor == "alice"]
    assert chat_approval[0].source == "chat:u01alice@T01/C01"
    assert chat_approval[0].detail["chat_user"] == "U01ALICE"
    # the same digest everywhere, and no secret anywhere in the log
    digests = {e.detail["digest"] for e in events if e.action == "release.promoted"}
    assert digests == {release.digest}
    assert DB_PASSWORD not in json.dumps([e.detail for e in events])
