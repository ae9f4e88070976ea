"""Races between threads sharing one store, as webhook handlers, pollers and build
workers do: exactly one winner every time, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from pipeline.store import ConflictError, Release, Store
from tests.store.samples import commit, digest

pytestmark = pytest.mark.integration

THREADS = 8
T = TypeVar("T")


def race(action: Callable[[int], T], threads: int = THREADS) -> list[T | BaseException]:
    """Run ``action(i)`` in ``threads`` threads released at once; results in thread order."""
    start = threading.Barrier(threads)
    results: dict[int, T | BaseException] = {}

    def run(i: int) -> None:
        try:
            start.wait(timeout=20)
            results[i] = action(i)
        except BaseException as exc:
            results[i] = exc

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(w.is_alive() for w in workers), "a racing thread did not finish in 60 s"
    assert sorted(results) == list(range(threads))
    return [results[i] for i in range(threads)]


def test_racing_creates_make_one_build(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    for round_ in range(3):
        results = race(lambda _i, n=round_: store.create_build("web", commit(n)))
        assert all(isinstance(r, tuple) for r in results), results
        outcomes = [r for r in results if isinstance(r, tuple)]
        assert len(outcomes) == THREADS
        assert sum(created for _, created in outcomes) == 1
        assert len({build.id for build, _ in outcomes}) == 1
    assert len(store.list_builds("web")) == 3


def test_racing_deliveries_are_seen_once(store: Store) -> None:
    for round_ in range(3):
        results = race(lambda _i, n=round_: store.record_delivery("github", f"delivery-{n}"))
        assert sorted(results, key=str) == [False] * (THREADS - 1) + [True]


def test_racing_workers_never_claim_the_same_build(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    queued = [store.create_build("web", commit(n))[0].id for n in range(THREADS // 2)]
    results = race(lambda i: store.claim_next_build(f"worker-{i}"))
    assert not [r for r in results if isinstance(r, BaseException)], results
    claimed = [r for r in results if r is not None and not isinstance(r, BaseException)]
    assert sorted(build.id for build in claimed) == queued
    assert results.count(None) == THREADS - len(queued)
    assert len({build.worker for build in claimed}) == len(queued)
    assert store.claim_next_build("late") is None


def test_racing_compare_and_set_has_one_winner(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    release: Release = store.create_release("web", commit(1), digest(1), {})[0]
    rollout = store.create_rollout("web", "prod", release.id, phase="progressing")
    results = race(
        lambda i: store.update_rollout(
            rollout.id, expected_version=rollout.version, weight=i + 1, state={"writer": i}
        )
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ConflictError) for r in losers), losers
    assert len(losers) == THREADS - 1
    final = store.get_rollout(rollout.id)
    assert final.version == rollout.version + 1
    assert final == winners[0]
    assert final.state == {"writer": final.weight - 1}


def test_racing_rollout_starts_have_one_winner(store: Store) -> None:
    store.upsert_app("web", "https://git.example/web.git", "main")
    releases = [store.create_release("web", commit(n), digest(n), {})[0] for n in range(THREADS)]
    results = race(
        lambda i: store.create_rollout("web", "prod", releases[i].id, phase="progressing")
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ConflictError) for r in results if r not in winners)
    assert [r.id for r in store.list_active_rollouts()] == [winners[0].id]


def test_racing_appends_keep_every_event(store: Store) -> None:
    results = race(
        lambda i: [
            store.append_event(f"actor-{i}", "note", source="system:test").id for _ in range(5)
        ]
    )
    ids = sorted(event_id for batch in results if isinstance(batch, list) for event_id in batch)
    assert len(ids) == THREADS * 5
    assert len(set(ids)) == len(ids)
    assert [e.id for e in store.list_events(limit=1000)] == ids
