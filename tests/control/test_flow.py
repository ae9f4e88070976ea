"""A push becomes a build and a release: webhooks of every provider, polling, the API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.queue.builder import TreeImageBuilder
from pipeline.store import BuildState
from runners.oci.client import RegistryClient
from tests.control.conftest import GatedBuilder, MakeHarness
from tests.control.support import PUSH_PAYLOADS, TOKENS, signed

pytestmark = pytest.mark.integration

APP_FILES = {"berth.yml": "run: {port: 8080}\n", "index.html": "<h1>hello</h1>\n"}


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_a_signed_push_builds_and_releases(make_harness: MakeHarness, provider: str) -> None:
    harness = make_harness(provider=provider)
    sha = harness.repo.commit(APP_FILES, "first page")
    body, headers = signed(provider, PUSH_PAYLOADS[provider](harness.repo.url, sha))
    with harness.server.client() as http:
        answer = http.post(f"/hooks/{provider}", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["result"] == "queued"
    build = harness.wait_finished(sha)
    assert build.state is BuildState.SUCCEEDED, build.reason
    release = harness.store.find_release("demo", sha)
    assert release is not None
    assert release.digest == build.digest
    assert release.message == "first page"
    assert release.author.startswith("Test Author")
    assert release.spec["run"]["port"] == 8080
    # (the release then enters dev: promotion events follow, at their own pace)
    actions = [e.action for e in harness.store.list_events(app="demo") if e.env is None]
    assert actions == ["build.queued", "build.succeeded", "release.created"]
    with harness.server.client(TOKENS["reader"]) as http:
        releases = http.get("/api/v1/apps/demo/releases").json()["releases"]
    assert [r["commit"] for r in releases] == [sha]


def test_polling_picks_up_a_commit_without_any_webhook(make_harness: MakeHarness) -> None:
    harness = make_harness(provider=None, poll_interval="1s")
    sha = harness.repo.commit(APP_FILES, "polled")
    build = harness.wait_finished(sha, timeout=30)
    assert build.state is BuildState.SUCCEEDED, build.reason
    events = harness.store.list_events(app="demo", action="build.queued")
    assert [e.source for e in events] == ["system:poller"]
    # later polls see the same head and queue nothing more
    second = harness.repo.commit({"index.html": "<h1>two</h1>\n"}, "polled again")
    assert harness.wait_finished(second, timeout=30).state is BuildState.SUCCEEDED
    assert len(harness.builds()) == 2


def test_fifty_deliveries_of_one_push_make_one_build(make_harness: MakeHarness) -> None:
    harness = make_harness()
    sha = harness.repo.commit(APP_FILES)
    payload = PUSH_PAYLOADS["github"](harness.repo.url, sha)
    results: list[str] = []

    def deliver(index: int) -> None:
        # 25 distinct deliveries, each sent twice (a provider's redelivery)
        body, headers = signed("github", payload, delivery=f"delivery-{index % 25}")
        with harness.server.client() as http:
            answer = http.post("/hooks/github", content=body, headers=headers)
        results.append(answer.json()["result"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(deliver, range(50)))
    assert len(results) == 50
    assert results.count("queued") == 1
    assert results.count("duplicate") == 25
    assert results.count("exists") == 24
    harness.wait_idle()
    builds = harness.builds()
    assert [(b.commit, b.state) for b in builds] == [(sha, BuildState.SUCCEEDED)]
    assert len(harness.store.list_releases("demo")) == 1


def test_ten_quick_pushes_build_the_newest_and_skip_the_rest(make_harness: MakeHarness) -> None:
    gated: list[GatedBuilder] = []

    def builder(client: RegistryClient, data: Path) -> GatedBuilder:
        gated.append(GatedBuilder(TreeImageBuilder(client, workdir=data / "tree")))
        return gated[0]

    harness = make_harness(builder=builder)
    shas = []
    with harness.server.client() as http:
        for index in range(10):
            sha = harness.repo.commit({"index.html": f"<h1>{index}</h1>\n"}, f"push {index}")
            shas.append(sha)
            body, headers = signed("github", PUSH_PAYLOADS["github"](harness.repo.url, sha))
            assert http.post("/hooks/github", content=body, headers=headers).status_code == 202
            if index == 0:
                assert gated[0].started.wait(30), "the first build never started"
    gated[0].gate.set()
    harness.wait_idle()
    states = {b.commit: b for b in harness.builds()}
    assert states[shas[0]].state is BuildState.SUCCEEDED  # it was running: never superseded
    assert states[shas[-1]].state is BuildState.SUCCEEDED
    for sha in shas[1:-1]:
        assert states[sha].state is BuildState.SKIPPED
        assert states[sha].reason.startswith("superseded by")
    released = [r.commit for r in harness.store.list_releases("demo")]
    assert released == [shas[-1], shas[0]]


def test_trigger_cancel_and_logs_through_the_api(make_harness: MakeHarness) -> None:
    gated: list[GatedBuilder] = []

    def builder(client: RegistryClient, data: Path) -> GatedBuilder:
        gated.append(GatedBuilder(TreeImageBuilder(client, workdir=data / "tree")))
        return gated[0]

    harness = make_harness(builder=builder)
    first = harness.repo.commit(APP_FILES, "first")
    with harness.server.client(TOKENS["deployer"]) as http:
        answer = http.post("/api/v1/apps/demo/builds", json={})
        assert answer.status_code == 202, answer.text
        assert answer.json()["build"]["commit"] == first  # the branch head, by ls-remote
        build_id = answer.json()["build"]["id"]
        assert gated[0].started.wait(30)
        # the log streams while the build runs
        with http.stream("GET", f"/api/v1/builds/b-{build_id}/logs", params={"follow": 1}) as log:
            chunks = log.iter_bytes()
            head = next(chunks)
            assert f"build b-{build_id}: demo at {first}".encode() in head
            cancelled = http.post(f"/api/v1/builds/{build_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["state"] == "cancelled"
            # the build is marked cancelled while its worker still holds the log (the
            # gate is shut): a follower started now waits for the worker's last lines
            with http.stream(
                "GET", f"/api/v1/builds/b-{build_id}/logs", params={"follow": 1}
            ) as late:
                late_chunks = late.iter_bytes()
                late_head = next(late_chunks)
                gated[0].gate.set()
                late_rest = b"".join(late_chunks)
            rest = b"".join(chunks)
        assert b"finished: cancelled" in head + rest
        assert b"finished: cancelled" in late_head + late_rest
        again = http.post(f"/api/v1/builds/{build_id}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        # triggering the cancelled commit builds it again
        retry = http.post("/api/v1/apps/demo/builds", json={"commit": first})
        assert retry.status_code == 202
    harness.wait_idle()
    build = harness.store.get_build(build_id)
    assert build.state is BuildState.SUCCEEDED
    actions = [e.action for e in harness.store.list_events(app="demo") if e.env is None]
    assert actions.count("build.cancelled") == 1
    assert actions[-1] == "release.created"
