"""Promotion over a real store: gates run as local processes, the perf gate drives real
load at a Starlette app under uvicorn, rollouts switch at once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.promote.errors import PromotionRefused
from pipeline.promote.policy import Actor
from pipeline.promote.service import GateJob
from pipeline.promote.views import history, status
from pipeline.promote.worker import GateWorker
from pipeline.store import cli_source
from tests.helpers.procs import wait_until
from tests.promote.support import (
    DB_PASSWORD,
    ENVIRON,
    SLACK_SECRET,
    Behaviour,
    Harness,
    harness,
    new_release,
    serve_target,
    spec,
)

pytestmark = pytest.mark.integration

ALICE = Actor("alice", frozenset({"deploy"}))
BOB = Actor("bob", frozenset({"deploy"}))
MALLORY = Actor("mallory", frozenset({"deploy"}))
ROOT = Actor("root", frozenset({"admin"}))


@pytest.fixture
def target() -> Iterator[str]:
    with serve_target(Behaviour()) as url:
        yield url


@pytest.fixture
def h(tmp_path: Path, target: str) -> Iterator[Harness]:
    with harness(tmp_path, target) as made:
        yield made


def stable(h: Harness) -> dict[str, int | None]:
    return {
        e.name: h.store.get_environment("demo", e.name).stable_release_id
        for e in h.settings.environments
    }


def snapshot(h: Harness, release: int) -> tuple[object, ...]:
    """Everything a refused request must leave alone."""
    return (
        stable(h),
        [h.store.get_environment("demo", e.name).lock for e in h.settings.environments],
        [len(h.store.list_approvals(release, e.name)) for e in h.settings.environments],
        len(h.store.list_events(limit=1000)),
    )


def test_a_good_release_travels_through_all_five_environments(h: Harness) -> None:
    release = new_release(h.store, 1, spec()).id
    h.service.release_created("demo", release)
    # dev (no gate) -> functional-test (exit 0) -> perf-test (real load) -> waits in pre-prod
    assert stable(h) == {"dev": release, "functional-test": release, "perf-test": release,
                         "pre-prod": release, "prod": None}  # fmt: skip
    assert len(h.loads) == 1
    assert h.loads[0].requests == 20
    perf = h.store.list_events(app="demo", env="perf-test", action="gate.passed")
    assert perf[0].detail["report"]["requests"] == 20
    source = cli_source("alice")
    h.service.approve(ALICE, "demo", "pre-prod", source=source)
    assert stable(h)["prod"] == release
    h.service.approve(ALICE, "demo", "prod", source=source)
    prod = next(r for r in status(h.service, "demo") if r["env"] == "prod")
    assert prod["approvals"] == {
        "release": release,
        "given": ["alice"],
        "required": 2,
        "missing": 1,
    }
    h.service.approve(BOB, "demo", "prod", source=cli_source("bob"))
    assert h.store.list_events(app="demo", env="prod", action="gate.passed")
    path = [e.env for e in h.store.list_events(app="demo", action="release.entered")]
    assert path == ["dev", "functional-test", "perf-test", "pre-prod", "prod"]
    entries = history(h.service, "demo", "prod")
    assert [(e["release"], e["promoted_by"], e["outcome"]) for e in entries] == [
        (release, "berth", "passed")
    ]
    approved = h.store.list_events(app="demo", env="prod", action="approval.added")
    assert [(e.actor, e.source) for e in approved] == [("alice", "cli:alice"), ("bob", "cli:bob")]


def test_a_broken_release_stops_at_functional_test(h: Harness) -> None:
    broken = new_release(h.store, 2, spec(("sh", "-c", "echo FAIL: /login 500; exit 3"))).id
    h.service.release_created("demo", broken)
    assert stable(h)["functional-test"] == broken
    assert stable(h)["perf-test"] is None
    failed = h.store.list_events(app="demo", env="functional-test", action="gate.failed")
    assert failed[0].detail["message"] == "exit 3"
    assert "FAIL: /login 500" in failed[0].detail["output"]
    before = snapshot(h, broken)
    with pytest.raises(PromotionRefused) as refused:
        h.service.promote(ALICE, "demo", "perf-test", source=cli_source("alice"))
    assert str(refused.value) == (
        "cannot promote demo to perf-test: release 2 has not passed functional-test "
        "(gate failed: exit 3)"
    ).replace("release 2", f"release {broken}")
    assert refused.value.refusal == "not-passed"
    with pytest.raises(PromotionRefused, match="pre-prod is not next"):
        h.service.promote(ALICE, "demo", "pre-prod", release=broken, source=cli_source("alice"))
    assert snapshot(h, broken) == before


def test_impossible_perf_thresholds_stop_at_perf_test_with_the_report(h: Harness) -> None:
    release = new_release(h.store, 3, spec(min_rps=1_000_000.0)).id
    h.service.release_created("demo", release)
    assert stable(h)["perf-test"] == release
    assert stable(h)["pre-prod"] is None
    failed = h.store.list_events(app="demo", env="perf-test", action="gate.failed")[0]
    assert "is below the minimum 1e+06" in failed.detail["message"]
    assert failed.detail["report"]["requests"] == 20
    row = next(r for r in status(h.service, "demo") if r["env"] == "perf-test")
    assert row["gate"]["status"] == "failed"


def test_a_lock_blocks_promotion_until_unlocked(h: Harness) -> None:
    h.service.lock(BOB, "demo", "perf-test", "load test rig down", source=cli_source("bob"))
    release = new_release(h.store, 4, spec()).id
    h.service.release_created("demo", release)
    assert stable(h)["functional-test"] == release
    assert stable(h)["perf-test"] is None
    row = next(r for r in status(h.service, "demo") if r["env"] == "perf-test")
    assert row["lock"]["holder"] == "bob"
    assert row["waiting"]["held"] == "perf-test is locked by bob"
    before = snapshot(h, release)
    with pytest.raises(PromotionRefused, match="locked by bob"):
        h.service.promote(ALICE, "demo", "perf-test", source=cli_source("alice"))
    with pytest.raises(PromotionRefused, match="locked by bob"):
        h.service.promote(ROOT, "demo", "perf-test", force=True, source=cli_source("root"))
    with pytest.raises(PromotionRefused, match="locked by bob"):
        h.service.unlock(ALICE, "demo", "perf-test", source=cli_source("alice"))
    assert snapshot(h, release) == before
    assert h.service.unlock(BOB, "demo", "perf-test", source=cli_source("bob"))
    assert stable(h)["pre-prod"] == release  # auto-promotion went on once unlocked


def test_a_user_not_allowed_in_prod_is_refused(h: Harness) -> None:
    release = new_release(h.store, 5, spec()).id
    h.service.release_created("demo", release)
    h.service.approve(ALICE, "demo", "pre-prod", source=cli_source("alice"))
    before = snapshot(h, release)
    with pytest.raises(PromotionRefused) as refused:
        h.service.approve(MALLORY, "demo", "prod", source=cli_source("mallory"))
    assert refused.value.refusal == "forbidden"
    assert "mallory is not an approver of prod (allowed: alice, bob, carol)" in str(refused.value)
    assert snapshot(h, release) == before


def test_forced_promotion_is_admin_only_and_recorded(h: Harness) -> None:
    broken = new_release(h.store, 6, spec(("sh", "-c", "exit 1"))).id
    h.service.release_created("demo", broken)
    with pytest.raises(PromotionRefused, match="needs the admin scope"):
        h.service.promote(ALICE, "demo", "perf-test", force=True, source=cli_source("alice"))
    decision = h.service.promote(ROOT, "demo", "perf-test", force=True, source=cli_source("root"))
    assert decision.forced
    assert stable(h)["perf-test"] == broken
    event = h.store.list_events(app="demo", env="perf-test", action="release.promoted")[0]
    assert event.actor == "root"
    assert event.detail["forced"] is True
    assert event.detail["overridden"] == [
        f"release {broken} has not passed functional-test (gate failed: exit 1)"
    ]


def test_a_newer_release_supersedes_one_waiting_and_approvals_lapse(h: Harness) -> None:
    first = new_release(h.store, 7, spec()).id
    h.service.release_created("demo", first)
    h.service.approve(ALICE, "demo", "pre-prod", source=cli_source("alice"))
    h.service.approve(ALICE, "demo", "prod", source=cli_source("alice"))
    assert [a.approver for a in h.store.list_approvals(first, "prod")] == ["alice"]
    second = new_release(h.store, 8, spec()).id
    h.service.release_created("demo", second)
    assert stable(h)["pre-prod"] == second
    h.service.approve(BOB, "demo", "pre-prod", source=cli_source("bob"))
    assert stable(h)["prod"] == second
    assert h.store.list_approvals(first, "prod") == []  # lapsed when release 2 took its place
    with pytest.raises(PromotionRefused, match="approvals belong to the release running"):
        h.service.approve(BOB, "demo", "prod", release=first, source=cli_source("bob"))


def test_owed_gates_survive_a_restart_and_run_in_the_worker(h: Harness) -> None:
    release = new_release(h.store, 9, spec()).id
    h.store.set_stable_release("demo", "dev", release)
    h.store.set_stable_release("demo", "functional-test", release)
    # the control plane died after recording the gate as running
    h.store.append_event("berth", "gate.started", source="system:gates", app="demo",
                         env="functional-test", release_id=release, detail={"gate": "functional"})  # fmt: skip
    owed = h.service.pending_gates()
    assert owed == [GateJob("demo", "functional-test", release)]
    worker = GateWorker(h.service.run_gate)
    worker.start(owed)
    try:
        wait_until(lambda: stable(h)["pre-prod"] == release and worker.idle(), timeout=20)
    finally:
        worker.stop()
    assert worker.finished[0][1].status.value == "passed"
    assert h.service.pending_gates() == []


def test_no_secret_value_in_events_logs_or_views(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = spec(("sh", "-c", f"echo connecting with {DB_PASSWORD}; exit 0"))
    release = new_release(h.store, 10, leaky).id
    h.service.release_created("demo", release)
    h.service.approve(ALICE, "demo", "pre-prod", source=cli_source("alice"))
    output = h.store.list_events(app="demo", env="functional-test", action="gate.passed")[0]
    assert "connecting with ******" in output.detail["output"]
    everything = repr(h.store.list_events(limit=1000)) + repr(status(h.service)) + caplog.text
    everything += repr(history(h.service, "demo", "functional-test"))
    for value in ENVIRON.values():
        assert value not in everything
    assert SLACK_SECRET not in everything
