"""The REST API: tokens and scopes, and a driver that walks the published OpenAPI
document, calls every operation on the live server and checks each answer against
the schema the document declares for it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.control.conftest import Harness, MakeHarness
from tests.control.schemacheck import check
from tests.control.support import PUSH_PAYLOADS, TOKENS, signed
from tests.helpers.procs import wait_until

pytestmark = pytest.mark.integration

SCOPE_RANK = {"read": 0, "deploy": 1, "admin": 2}
TOKEN_OF = {"read": TOKENS["reader"], "deploy": TOKENS["deployer"], "admin": TOKENS["admin"]}


def _released(make_harness: MakeHarness) -> tuple[Harness, str]:
    harness = make_harness()
    sha = harness.repo.commit({"berth.yml": "run: {port: 8080}\n", "index.html": "hi\n"})
    body, headers = signed("github", PUSH_PAYLOADS["github"](harness.repo.url, sha))
    with harness.server.client() as http:
        assert http.post("/hooks/github", content=body, headers=headers).status_code == 202
    harness.wait_finished(sha)
    return harness, sha


def _values(harness: Harness, sha: str) -> dict[str, str]:
    build = harness.builds()[0]
    release = harness.store.list_releases("demo")[0]
    return {"app": "demo", "build_id": f"b-{build.id}", "release_id": str(release.id), "sha": sha}


def _fill(path: str, values: dict[str, str]) -> str:
    path = path.replace("{app}", values["app"]).replace("{env}", "dev")
    if "/builds/" in path:
        return path.replace("{id}", values["build_id"])
    return path.replace("{id}", values["release_id"])


def _check_answer(
    document: dict[str, Any], operation: dict[str, Any], answer: Any, where: str
) -> None:
    declared = operation["responses"]
    assert str(answer.status_code) in declared, f"{where}: undocumented status {answer.status_code}"
    content = declared[str(answer.status_code)]["content"]
    media = answer.headers["content-type"].split(";")[0]
    assert media in content, f"{where}: {media} not documented ({list(content)})"
    if media == "application/json":
        problems = check(answer.json(), content[media]["schema"], document)
        assert not problems, f"{where}: {problems}"


# Deploy operations the walk expects to be refused, with the reason: the release runs in
# dev (no gate, nothing before it) and releases switch at once without a cluster.
REFUSED = {
    "getUrl": 409,  # no hosts, so no entry address
    "promote": 400,  # dev is entered by builds only
    "approve": 400,  # dev has no approval gate
    "rollback": 409,  # nothing ran in dev before
    "abort": 409,  # no rollout in progress
    "resume": 409,
    "retry": 409,
}


def _body(op: dict[str, Any], sha: str) -> dict[str, Any] | None:
    if "requestBody" not in op:
        return None
    return {"triggerBuild": {"commit": sha}, "lock": {"reason": "walk"}}.get(op["operationId"], {})


def test_every_documented_operation_answers_as_documented(make_harness: MakeHarness) -> None:
    harness, sha = _released(make_harness)
    values = _values(harness, sha)
    release = int(values["release_id"])
    wait_until(lambda: harness.store.get_environment("demo", "dev").stable_release_id == release)
    with harness.server.client() as anonymous:
        document = anonymous.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    operations = [
        (path, method, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]
    assert len(operations) >= 24
    exercised = 0
    for path, method, op in operations:
        url = _fill(path, values)
        scopes = [s for requirement in op["security"] for s in requirement.get("bearer", [])]
        body = _body(op, sha)
        if scopes:
            needed = scopes[0]
            with harness.server.client() as anonymous:
                denied = anonymous.request(method, url, json=body)
            assert denied.status_code == 401, f"{method} {path} without a token"
            _check_answer(document, op, denied, f"{method} {path} anonymous")
            for scope, rank in SCOPE_RANK.items():
                if rank < SCOPE_RANK[needed]:
                    with harness.server.client(TOKEN_OF[scope]) as weak:
                        small = weak.request(method, url, json=body)
                    assert small.status_code == 403, f"{method} {path} with {scope}"
                    _check_answer(document, op, small, f"{method} {path} {scope}")
        with harness.server.client(TOKENS["admin"]) as http:
            answer = http.request(method, url, json=body)
        where = f"{method.upper()} {path}"
        if path.endswith("/cancel"):
            assert answer.status_code == 409, where  # the build already finished
        elif op["operationId"] in REFUSED:
            assert answer.status_code == REFUSED[op["operationId"]], f"{where}: {answer.text}"
        else:
            successes = {int(code) for code in op["responses"] if code.startswith("2")}
            assert answer.status_code in successes, f"{where}: {answer.text}"
        _check_answer(document, op, answer, where)
        for name in ("limit", "before", "after", "offset"):
            if any(p["name"] == name for p in op["parameters"]):
                with harness.server.client(TOKENS["admin"]) as http:
                    bad = http.request(method, url, params={name: "-5"})
                assert bad.status_code == 400, f"{where} {name}=-5"
                _check_answer(document, op, bad, f"{where} {name}=-5")
        exercised += 1
    assert exercised == len(operations)


def test_unknown_objects_are_404_with_json_errors(make_harness: MakeHarness) -> None:
    harness = make_harness()
    with harness.server.client(TOKENS["admin"]) as http:
        for url in (
            "/api/v1/apps/nope",
            "/api/v1/builds/b-999",
            "/api/v1/releases/999",
            "/api/v1/apps/nope/releases",
            "/api/v1/builds/b-x",
        ):
            answer = http.get(url)
            assert answer.status_code == 404, url
            assert answer.json()["error"]["code"] == "not_found"
        bad = http.post("/api/v1/apps/demo/builds", json={"commit": "main"})
        assert bad.status_code == 400
        assert "commit" in bad.json()["error"]["message"]
        wrong = http.get("/api/v1/apps", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
    assert harness.builds() == []
    assert harness.store.list_events() == []
