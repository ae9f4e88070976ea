"""A store with something to show: an app, releases (one with a hostile commit message),
environments with a lock and a pin, a rollout in progress, a build with a log, hosts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from pipeline.api.auth import ApiCredential, TokenAuth
from pipeline.queue.logs import BuildLogs
from pipeline.rollout.codec import state_from_json, state_to_json
from pipeline.rollout.model import Allocation, Pause, Phase, RolloutState, SetWeight
from pipeline.secrets import Secret, SecretSource
from pipeline.store import Build, FixedClock, Release, Rollout, Store, default_url

READ_TOKEN = "read-token-3f9a1c77e2"
DEPLOY_TOKEN = "deploy-token-b81d0e44aa"
HOSTILE = '<script>alert("owned")</script> fix the "quotes" & <b>tags</b>'
HOSTILE_LOCK = '"><img src=x onerror=alert(1)>'
STEPS = (SetWeight(10), Pause(None), SetWeight(40), SetWeight(100))


def token_auth() -> TokenAuth:
    return TokenAuth(
        [
            ApiCredential(
                "viewer", Secret(READ_TOKEN, SecretSource(env="READ")), frozenset({"read"})
            ),
            ApiCredential(
                "ci", Secret(DEPLOY_TOKEN, SecretSource(env="DEPLOY")), frozenset({"deploy"})
            ),
        ]
    )


def commit(number: int) -> str:
    return hashlib.sha1(f"commit {number}".encode()).hexdigest()


def digest(number: int) -> str:
    return "sha256:" + hashlib.sha256(f"image {number}".encode()).hexdigest()


@dataclass
class World:
    store: Store
    clock: FixedClock
    logs: BuildLogs
    old: Release
    new: Release
    rollout: Rollout
    build: Build


def open_store(tmp_path: Path, clock: FixedClock | None = None) -> Store:
    return Store.open(default_url(tmp_path), clock=clock)


def rollout_state(old: Release, new: Release, *, weight: int, step_index: int) -> RolloutState:
    replicas = 4
    canary = -(-replicas * weight // 100) if weight else 0
    return RolloutState(
        app="web",
        env="prod",
        stable=old.id,
        canary=new.id,
        replicas=replicas,
        steps=STEPS,
        phase=Phase.PROGRESSING,
        step_index=step_index,
        weight=weight,
        allocations=(
            Allocation(old.id, replicas - canary, 100 - weight),
            Allocation(new.id, canary, weight),
        ),
    )


def advance(store: Store, rollout_id: int, *, weight: int, step_index: int) -> Rollout:
    """Move the rollout to ``weight`` the way the engine does: state and columns at once."""
    current = store.get_rollout(rollout_id)
    state = replace(state_from_json(current.state), weight=weight, step_index=step_index)
    old, new = state.allocations
    state = replace(
        state,
        allocations=(
            replace(old, weight=100 - weight),
            replace(new, weight=weight, replicas=-(-state.replicas * weight // 100)),
        ),
    )
    return store.update_rollout(
        rollout_id,
        expected_version=current.version,
        step_index=step_index,
        weight=weight,
        state=state_to_json(state),
    )


def seed(tmp_path: Path) -> World:
    clock = FixedClock()
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = open_store(tmp_path, clock)
    logs = BuildLogs(tmp_path / "logs")
    store.upsert_app("web", "https://git.example.com/web.git", "main")
    old, _ = store.create_release(
        "web", commit(1), digest(1), {}, author="alice", message="First release\n\nbody"
    )
    new, _ = store.create_release(
        "web", commit(2), digest(2), {}, author="mallory", message=HOSTILE
    )
    store.set_stable_release("web", "dev", old.id)
    store.set_stable_release("web", "dev", new.id)
    store.set_stable_release("web", "prod", old.id, pinned=True)
    store.lock_environment("web", "dev", "bob", HOSTILE_LOCK)
    rollout = store.create_rollout(
        "web",
        "prod",
        new.id,
        phase="progressing",
        from_release_id=old.id,
        weight=10,
        state=state_to_json(rollout_state(old, new, weight=10, step_index=0)),
    )
    store.append_event("berth", "rollout.started", source="system:test", app="web", env="prod")
    build, _ = store.create_build("web", commit(2))
    store.claim_next_build("worker-1")
    build = store.set_build_state(build.id, "succeeded", digest=digest(2))
    with logs.open(build.id) as log:
        log.write(b"step 1/2: FROM scratch\n<b>not bold</b>\n\x1b[32mdone\x1b[0m\n")
    store.upsert_host("host-1", "10.0.0.1:7070", {"zone": "a"})
    store.record_heartbeat("host-1")
    store.upsert_host("host-2", "10.0.0.2:7070", {"zone": "<b>"})
    store.record_heartbeat("host-2", clock.now() - timedelta(minutes=5))
    store.upsert_host("host-3", "10.0.0.3:7070", {})
    return World(store, clock, logs, old, new, rollout, build)
