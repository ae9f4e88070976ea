"""Bad deliveries: each answers a JSON error (or 202 ignored) and changes no state."""

from __future__ import annotations

import json

import pytest

from pipeline.hooks.endpoint import hook_path_key
from pipeline.secrets import Secret, SecretSource
from tests.control.conftest import Harness, MakeHarness
from tests.control.support import HOOK_SECRET, PUSH_PAYLOADS, github_push, signed

pytestmark = pytest.mark.integration


def state(harness: Harness) -> tuple[int, int, int]:
    store = harness.store
    with store.engine.connect() as conn:
        deliveries = conn.exec_driver_sql("SELECT count(*) FROM deliveries").scalar_one()
    return len(harness.builds()), int(deliveries), len(store.list_events(limit=1000))


@pytest.fixture
def harness(make_harness: MakeHarness) -> Harness:
    return make_harness(provider="github")


def test_bad_deliveries_answer_json_errors_and_change_nothing(harness: Harness) -> None:
    sha = harness.repo.commit({"index.html": "x\n"})
    url = harness.repo.url
    good_body, good_headers = signed("github", github_push(url, sha))
    huge = b"{" + b" " * (25 * 1024 * 1024) + b"}"
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        (
            "no signature",
            good_body,
            {**good_headers, "x-hub-signature-256": ""},
            401,
            "unauthorized",
        ),
        (
            "wrong secret",
            *signed("github", github_push(url, sha), secret="not-the-secret"),
            401,
            "unauthorized",
        ),
        ("malformed json", b"{not json", signed("github", b"{not json")[1], 400, "bad_request"),
        ("json array", b"[1]", signed("github", b"[1]")[1], 400, "bad_request"),
        (
            "unwatched repository",
            *signed("github", github_push("https://git.example.test/other/app.git", sha)),
            404,
            "unknown_repo",
        ),
        ("too large", huge, good_headers, 413, "too_large"),
        (
            "wrong content type",
            good_body,
            {**good_headers, "content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media",
        ),
    ]
    before = state(harness)
    with harness.server.client() as http:
        for name, body, headers, status, code in cases:
            answer = http.post("/hooks/github", content=body, headers=headers)
            assert answer.status_code == status, f"{name}: {answer.text[:200]}"
            assert answer.json()["error"]["code"] == code, name
            assert answer.json()["error"]["message"], name
        # an unwatched repository's answer says nothing about the apps that exist
        unknown = http.post("/hooks/github", content=cases[4][1], headers=cases[4][2]).text
        assert "demo" not in unknown
        assert harness.repo.url not in unknown
    assert state(harness) == before


def test_ignored_deliveries_answer_202_or_200_and_queue_nothing(harness: Harness) -> None:
    sha = harness.repo.commit({"index.html": "x\n"})
    url = harness.repo.url
    before = state(harness)
    cases = [
        (signed("github", github_push(url, sha), event="issues"), 202, "ignored"),
        (signed("github", github_push(url, sha), event="ping"), 200, "pong"),
        (signed("github", github_push(url, sha, ref="refs/heads/feature")), 202, "ignored"),
        (signed("github", github_push(url, sha, ref="refs/tags/v1")), 202, "ignored"),
        (signed("github", github_push(url, "0" * 40)), 202, "ignored"),
    ]
    with harness.server.client() as http:
        for (body, headers), status, result in cases:
            answer = http.post("/hooks/github", content=body, headers=headers)
            assert answer.status_code == status, answer.text
            assert answer.json()["result"] == result
        assert http.post("/hooks/bitbucket", content=b"{}").status_code == 404
    assert state(harness) == before


def test_gitlab_token_and_per_app_path(make_harness: MakeHarness) -> None:
    harness = make_harness(provider="gitlab")
    sha = harness.repo.commit({"index.html": "x\n"})
    payload = PUSH_PAYLOADS["gitlab"](harness.repo.url, sha)
    body, headers = signed("gitlab", payload)
    before = state(harness)
    with harness.server.client() as http:
        wrong = http.post("/hooks/gitlab", content=body, headers={**headers, "x-gitlab-token": "x"})
        assert wrong.status_code == 401
        assert state(harness) == before
        guessed = http.post("/hooks/app/" + "0" * 40, content=body, headers=headers)
        assert guessed.status_code == 404
        # the unguessable per-app path needs no token: knowing it is the proof
        key = hook_path_key("demo", Secret(HOOK_SECRET, SecretSource(env="X")))
        unsigned = {k: v for k, v in headers.items() if k != "x-gitlab-token"}
        answer = http.post(f"/hooks/app/{key}", content=json.dumps(payload), headers=unsigned)
        assert answer.status_code == 202, answer.text
        assert answer.json()["build"] == harness.builds()[0].id
