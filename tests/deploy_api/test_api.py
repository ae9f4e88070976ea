"""The deploy endpoints on a live control plane: scopes, the happy path of a release
through gates and approvals, and bad input answered with JSON errors and no change."""

from __future__ import annotations

from typing import Any

import pytest

from tests.control.support import TOKENS
from tests.deploy_api.conftest import DB_PASSWORD, Deploy
from tests.helpers.procs import wait_until
from tests.promote.support import spec

pytestmark = pytest.mark.integration

BASE = "/api/v1/apps/demo/environments"


def _stable(deploy: Deploy, env: str) -> int | None:
    return deploy.store.get_environment("demo", env).stable_release_id


def _wait_stable(deploy: Deploy, env: str, release: int) -> None:
    wait_until(lambda: _stable(deploy, env) == release, timeout=30)


def _gate(deploy: Deploy, env: str, release: int) -> str | None:
    for event in deploy.store.list_events(app="demo", env=env, release_id=release):
        if event.action in ("gate.passed", "gate.failed"):
            return event.action
    return None


def _call(deploy: Deploy, who: str | None, method: str, path: str, body: Any = None) -> Any:
    with deploy.server.client(TOKENS[who] if who else None) as http:
        return http.request(method, path, json=body)


def _promotions(deploy: Deploy, env: str) -> list[int | None]:
    return [
        e.release_id
        for e in deploy.store.list_events(app="demo", env=env, action="release.promoted")
    ]


def test_scopes_status_history_url_gate_logs_and_approvals(deploy: Deploy) -> None:
    first = deploy.release(1, spec())
    # dev (no gate) -> functional-test -> perf-test: gates pass, auto-promotion moves it
    _wait_stable(deploy, "pre-prod", first.id)

    anonymous = _call(deploy, None, "GET", "/api/v1/status")
    assert anonymous.status_code == 401
    status = _call(deploy, "reader", "GET", "/api/v1/status")
    assert status.status_code == 200, status.text
    rows = {row["env"]: row for row in status.json()["environments"]}
    assert list(rows) == ["dev", "functional-test", "perf-test", "pre-prod", "prod"]
    assert rows["dev"]["stable"]["id"] == first.id
    assert rows["functional-test"]["gate"] == {
        "kind": "functional", "release": first.id, "status": "passed", "message": "exit 0",
    }  # fmt: skip
    assert rows["pre-prod"]["approvals"]["missing"] == 1
    assert rows["prod"]["stable"] is None
    assert rows["prod"]["waiting"] is None  # pre-prod not passed yet

    history = _call(deploy, "reader", "GET", f"{BASE}/functional-test/history")
    assert history.status_code == 200
    [entry] = history.json()["entries"]
    assert (entry["release"], entry["promoted_by"], entry["from_env"]) == (first.id, "berth", "dev")
    assert entry["outcome"] == "passed"

    url = _call(deploy, "reader", "GET", f"{BASE}/perf-test/url")
    assert url.json() == {"app": "demo", "env": "perf-test", "url": deploy.target}
    gate = _call(deploy, "reader", "GET", f"{BASE}/perf-test/gate").json()
    assert (gate["release"], gate["gate"], gate["status"]) == (first.id, "perf", "passed")
    assert gate["report"]["requests"] == 20

    # read may not approve; deploy may, and the release moves on to prod
    refused = _call(deploy, "reader", "POST", f"{BASE}/pre-prod/approve", {})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    approved = _call(deploy, "deployer", "POST", f"{BASE}/pre-prod/approve", {"comment": "ok"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["release"] == first.id
    _wait_stable(deploy, "prod", first.id)
    once = _call(deploy, "deployer", "POST", f"{BASE}/prod/approve", {}).json()
    assert once["release"] == first.id
    prod = _call(deploy, "reader", "GET", f"{BASE}/prod").json()
    assert prod["approvals"]["given"] == ["deployer"]
    assert prod["approvals"]["missing"] == 1

    # notifications for pre-prod and prod only (the config's filter)
    posts = deploy.notifications.wait_for(2, timeout=20)
    texts = [p["text"] for p in posts]
    assert any("demo/pre-prod" in t and "approval" in t for t in texts), texts
    assert not any("demo/dev" in t for t in texts), texts

    # the secret of dev appears in no answer
    for path in ("/api/v1/status", f"{BASE}/dev/history", "/api/v1/events?limit=1000"):
        assert DB_PASSWORD not in _call(deploy, "admin", "GET", path).text


def test_bad_input_is_refused_with_json_errors_and_changes_nothing(deploy: Deploy) -> None:
    good = deploy.release(1, spec())
    _wait_stable(deploy, "pre-prod", good.id)
    broken = deploy.release(2, spec(command=("sh", "-c", "echo broken; exit 3")))
    wait_until(lambda: _gate(deploy, "functional-test", broken.id) == "gate.failed", timeout=30)
    before = _promotions(deploy, "perf-test")

    cases = [
        ("deployer", f"{BASE}/perf-test/promote", {}, 409, "conflict"),  # the candidate runs
        ("deployer", f"{BASE}/perf-test/promote", {"release": broken.id}, 409, "not_passed"),
        ("deployer", f"{BASE}/prod/promote", {"release": broken.id}, 409, "not_passed"),
        ("deployer", f"{BASE}/qa/promote", {}, 404, "not_found"),
        ("deployer", "/api/v1/apps/nope/environments/dev/promote", {}, 404, "not_found"),
        ("deployer", f"{BASE}/perf-test/promote", {"release": "x"}, 400, "bad_request"),
        ("deployer", f"{BASE}/perf-test/promote", {"bogus": 1}, 400, "bad_request"),
        ("deployer", f"{BASE}/perf-test/promote", {"force": True}, 403, "forbidden"),
        ("reader", f"{BASE}/perf-test/promote", {}, 403, "forbidden"),
        ("deployer", f"{BASE}/perf-test/lock", {}, 400, "bad_request"),  # no reason
        ("deployer", f"{BASE}/perf-test/rollback", {"to": 999}, 404, "not_found"),
        ("deployer", f"{BASE}/prod/rollback", {"to": broken.id}, 409, "conflict"),  # never ran
        ("deployer", f"{BASE}/perf-test/abort", None, 409, "conflict"),
        ("deployer", f"{BASE}/perf-test/resume", None, 409, "conflict"),
        ("deployer", f"{BASE}/perf-test/retry", None, 409, "conflict"),
        ("reader", f"{BASE}/perf-test/rollback", {}, 403, "forbidden"),
    ]
    for who, path, body, status, code in cases:
        answer = _call(deploy, who, "POST", path, body)
        assert answer.status_code == status, f"{who} {path} {body}: {answer.text}"
        assert answer.json()["error"]["code"] == code, f"{path}: {answer.text}"
        assert answer.json()["error"]["message"]
    assert _promotions(deploy, "perf-test") == before
    assert _stable(deploy, "perf-test") == good.id
    assert _call(deploy, "reader", "GET", f"{BASE}/qa").status_code == 404

    # the gate's output is kept and shown
    logs = _call(deploy, "reader", "GET", f"{BASE}/functional-test/gate").json()
    assert (logs["status"], logs["message"]) == ("failed", "exit 3")
    assert "broken" in logs["output"]

    # a lock stops even a forced promotion; only its holder (or force) unlocks it
    force_broken = {"force": True, "release": broken.id}
    locked = _call(deploy, "deployer", "POST", f"{BASE}/perf-test/lock", {"reason": "freeze"})
    assert locked.status_code == 200, locked.text
    assert locked.json()["lock"]["holder"] == "deployer"
    forced = _call(deploy, "admin", "POST", f"{BASE}/perf-test/promote", force_broken)
    assert forced.status_code == 409
    assert forced.json()["error"]["code"] == "locked"
    assert _call(deploy, "admin", "POST", f"{BASE}/perf-test/unlock", {}).status_code == 409
    unlocked = _call(deploy, "deployer", "POST", f"{BASE}/perf-test/unlock", {})
    assert unlocked.json()["changed"] is True
    assert _promotions(deploy, "perf-test") == before

    # admin forces the broken release in; the record says so; rollback undoes it and pins
    forced = _call(deploy, "admin", "POST", f"{BASE}/perf-test/promote", force_broken)
    assert forced.status_code == 200, forced.text
    assert forced.json()["forced"] is True
    assert _stable(deploy, "perf-test") == broken.id
    history = _call(deploy, "reader", "GET", f"{BASE}/perf-test/history").json()["entries"]
    assert (history[0]["release"], history[0]["forced"], history[0]["promoted_by"]) == (
        broken.id, True, "admin",
    )  # fmt: skip
    wait_until(lambda: _gate(deploy, "perf-test", broken.id) == "gate.passed", timeout=30)
    back = _call(deploy, "deployer", "POST", f"{BASE}/perf-test/rollback", {})
    assert back.status_code == 200, back.text
    assert (back.json()["stable"]["id"], back.json()["pinned"]) == (good.id, True)
    again = _call(deploy, "deployer", "POST", f"{BASE}/perf-test/rollback", {"to": good.id})
    assert again.status_code == 409  # it runs already
    history = _call(deploy, "reader", "GET", f"{BASE}/perf-test/history").json()["entries"]
    assert history[0]["outcome"] == "rolled_back"
    assert history[0]["message"] == f"rolled back to release {good.id} by deployer"
