"""The store-backed dashboard source over a real SQLite store (and a real promotion
service for gates, approvals and history)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.promote.gates import ProcessGateRunner
from pipeline.promote.policy import Actor
from pipeline.promote.rollouts import StaticEntryPoints, SwitchRollouts
from pipeline.promote.service import PromotionService
from pipeline.settings import parse_settings
from pipeline.web import InstanceView, StoreDashboardSource
from tests.web.support import HOSTILE, World, advance, commit, digest, open_store, seed

pytestmark = pytest.mark.unit


class Counters:
    """Router counters from a table: {(app, env): {release: connections}}."""

    def __init__(self, table: Mapping[tuple[str, str], Mapping[int, int]]) -> None:
        self.table = table

    def connections(self, app: str, env: str) -> Mapping[int, int]:
        return self.table.get((app, env), {})


class Inventory:
    """Instances per host from a table."""

    def __init__(self, table: Mapping[str, Sequence[InstanceView]]) -> None:
        self.table = table

    def instances(self) -> Mapping[str, Sequence[InstanceView]]:
        return self.table


@pytest.fixture
def world(tmp_path: Path) -> World:
    return seed(tmp_path)


def test_matrix_shows_releases_locks_and_pins(world: World) -> None:
    source = StoreDashboardSource(world.store, environments=("dev", "staging", "prod"))
    data = source.snapshot()
    world.store.close()
    assert data.apps == ("web",)
    assert data.environments == ("dev", "staging", "prod")
    dev, staging, prod = (data.cell("web", env) for env in data.environments)
    assert dev is not None
    assert staging is not None
    assert prod is not None
    assert dev.stable is not None
    assert dev.stable.id == world.new.id
    assert dev.stable.message == HOSTILE
    assert dev.previous is not None
    assert dev.previous.id == world.old.id
    assert dev.lock is not None
    assert dev.lock.holder == "bob"
    assert not dev.pinned
    assert prod.pinned
    assert staging.stable is None
    assert prod.rollout_id == world.rollout.id
    assert dev.rollout_id is None


def test_rollout_detail_follows_the_engine_state(world: World) -> None:
    counters = Counters({("web", "prod"): {world.old.id: 90, world.new.id: 11}})
    source = StoreDashboardSource(world.store, traffic=counters)
    first = source.snapshot().rollouts
    advance(world.store, world.rollout.id, weight=40, step_index=2)
    second = source.snapshot().rollouts
    world.store.close()
    assert len(first) == 1
    assert len(second) == 1
    view = first[0]
    assert (view.step, view.steps, view.step_label, view.weight) == (1, 4, "set weight 10 %", 10)
    assert [(s.release, s.role, s.weight, s.connections) for s in view.shares] == [
        (world.old.id, "stable", 90, 90),
        (world.new.id, "canary", 10, 11),
    ]
    assert view.canary.commit == commit(2)
    assert view.stable is not None
    moved = second[0]
    assert (moved.step, moved.weight, moved.step_label) == (3, 40, "set weight 40 %")
    assert [s.weight for s in moved.shares] == [60, 40]
    assert [s.replicas for s in moved.shares] == [3, 2]


def test_a_finished_rollout_leaves_the_page_and_enters_history(world: World) -> None:
    source = StoreDashboardSource(world.store, environments=("dev", "prod"))
    current = world.store.get_rollout(world.rollout.id)
    world.store.update_rollout(
        current.id, expected_version=current.version, phase="completed", finished=True
    )
    data = source.snapshot()
    world.store.close()
    assert data.rollouts == ()
    assert not data.rolling
    prod = [h for h in data.history if h.env == "prod"]
    assert [(h.release, h.outcome, h.commit) for h in prod] == [
        (world.new.id, "completed", commit(2))
    ]


def test_hosts_health_and_instances(world: World) -> None:
    instance = InstanceView("web-prod-1", "web", "prod", world.new.id, "running", True)
    source = StoreDashboardSource(
        world.store,
        inventory=Inventory({"host-1": [instance]}),
        clock=world.clock,
        stale_after=timedelta(seconds=30),
    )
    hosts = {h.name: h for h in source.snapshot().hosts}
    plain = {h.name: h for h in StoreDashboardSource(world.store).snapshot().hosts}
    world.store.close()
    assert {n: h.health for n, h in hosts.items()} == {
        "host-1": "up",
        "host-2": "stale",
        "host-3": "unknown",
    }
    assert hosts["host-1"].instances == (instance,)
    assert hosts["host-2"].instances == ()
    assert plain["host-1"].instances is None


def test_builds_and_log_tail(world: World) -> None:
    source = StoreDashboardSource(world.store, logs=world.logs, log_tail=30)
    builds = source.snapshot().builds
    whole = StoreDashboardSource(world.store, logs=world.logs).build_log(world.build.id)
    tail = source.build_log(world.build.id)
    missing = source.build_log(world.build.id + 100)
    world.store.close()
    assert [(b.id, b.state, b.digest) for b in builds] == [(world.build.id, "succeeded", digest(2))]
    assert whole is not None
    assert not whole.truncated
    assert whole.text == "step 1/2: FROM scratch\n<b>not bold</b>\ndone\n"
    assert tail is not None
    assert tail.truncated
    assert tail.text == "done\n"
    assert missing is None


def test_latest_event_id_moves_with_the_event_log(world: World) -> None:
    source = StoreDashboardSource(world.store)
    before = source.latest_event_id()
    event = world.store.append_event("alice", "note.added", source="cli:alice")
    after = source.latest_event_id()
    snapshot = source.snapshot()
    world.store.close()
    assert before < after == event.id == snapshot.last_event_id


CONFIG = """
cluster: {hosts: 1}
apps:
  - {name: web, repo: "https://git.example.com/web.git"}
environments:
  - {name: dev}
  - name: prod
    gate: approval
    approval: {required: 2, approvers: [alice, bob]}
"""


def test_gates_approvals_and_history_from_the_promotion_service(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    settings = parse_settings(CONFIG, base_dir=tmp_path)
    store.upsert_app("web", "https://git.example.com/web.git", "main")
    service = PromotionService(
        store,
        settings,
        rollouts=SwitchRollouts(store),
        gate_runner=ProcessGateRunner(cwd=str(tmp_path)),
        entry_points=StaticEntryPoints({}),
    )
    release, _ = store.create_release("web", commit(7), digest(7), {}, message="seven")
    service.release_created("web", release.id)
    source = StoreDashboardSource(store, promotion=service)
    before = source.snapshot()
    service.approve(Actor("alice", frozenset({"deploy"})), "web", "prod", source="cli:alice")
    after = source.snapshot()
    store.close()
    assert before.environments == ("dev", "prod")
    prod = before.cell("web", "prod")
    assert prod is not None
    assert prod.stable is not None
    assert prod.stable.id == release.id
    assert prod.gate is not None
    assert prod.gate.kind == "approval"
    assert prod.approvals is not None
    assert (prod.approvals.given, prod.approvals.required) == ((), 2)
    approved = after.cell("web", "prod")
    assert approved is not None
    assert approved.approvals is not None
    assert approved.approvals.given == ("alice",)
    assert approved.approvals.missing == 1
    entered = [(h.env, h.release) for h in after.history]
    assert ("prod", release.id) in entered
    assert ("dev", release.id) in entered
