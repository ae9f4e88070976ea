"""The event log: append-only, ordered by id, filtered by subject, actor, action, source."""

from __future__ import annotations

import pytest

from pipeline.store import (
    FixedClock,
    InvalidInputError,
    Store,
    chat_source,
    cli_source,
    system_source,
    webhook_source,
)
from pipeline.store.store import StoreTransaction

pytestmark = pytest.mark.integration


def _fill(store: Store, clock: FixedClock) -> list[int]:
    rows = [
        ("github", "build.queued", webhook_source("github", "d-1"), "web", None, None),
        ("alice", "promote", cli_source("alice-laptop"), "web", "prod", 1),
        ("bob", "approve", chat_source("bob", "acme", "deploys"), "web", "prod", 1),
        ("berth", "rollout.started", system_source("engine"), "web", "prod", 1),
        ("berth", "rollout.started", system_source("engine"), "api", "dev", 2),
        ("alice", "lock", cli_source("alice-laptop"), "api", "prod", None),
        ("100%_sure", "note", "cli:100%_sure", None, None, None),
    ]
    ids = []
    for actor, action, source, app, env, release_id in rows:
        clock.advance(1)
        event = store.append_event(
            actor,
            action,
            source=source,
            app=app,
            env=env,
            release_id=release_id,
            detail={"n": len(ids)},
        )
        ids.append(event.id)
    return ids


def test_appended_events_read_back_in_order(store: Store, clock: FixedClock) -> None:
    ids = _fill(store, clock)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    events = store.list_events()
    assert [e.id for e in events] == ids
    assert [e.detail for e in events] == [{"n": n} for n in range(len(ids))]
    assert [e.at for e in events] == sorted(e.at for e in events)
    promote = events[1]
    assert (promote.actor, promote.action, promote.source) == (
        "alice",
        "promote",
        "cli:alice-laptop",
    )
    assert (promote.app, promote.env, promote.release_id) == ("web", "prod", 1)
    assert events[2].source == "chat:bob@acme/deploys"
    assert events[0].source == "webhook:github/d-1"


def test_filters_combine(store: Store, clock: FixedClock) -> None:
    ids = _fill(store, clock)
    assert [e.id for e in store.list_events(app="web", env="prod")] == ids[1:4]
    assert [e.id for e in store.list_events(actor="alice")] == [ids[1], ids[5]]
    assert [e.id for e in store.list_events(action="rollout.started", app="api")] == [ids[4]]
    assert [e.id for e in store.list_events(release_id=1, actor="bob")] == [ids[2]]
    assert [e.id for e in store.list_events(source=system_source("engine"))] == ids[3:5]
    assert [e.id for e in store.list_events(source_prefix="cli:alice")] == [ids[1], ids[5]]
    # LIKE wildcards in a prefix are taken literally
    assert [e.id for e in store.list_events(source_prefix="cli:100%_")] == [ids[6]]
    assert store.list_events(source_prefix="cli:1000") == []
    assert store.list_events(app="nope") == []


def test_paging_forwards_with_a_cursor_and_backwards_newest_first(
    store: Store, clock: FixedClock
) -> None:
    ids = _fill(store, clock)
    seen: list[int] = []
    cursor = None
    for _ in range(len(ids) + 1):  # bounded: a page of 3 must finish in a few rounds
        page = store.list_events(after_id=cursor, limit=3)
        if not page:
            break
        seen.extend(e.id for e in page)
        cursor = page[-1].id
    assert seen == ids

    newest = store.list_events(newest_first=True, limit=2)
    assert [e.id for e in newest] == [ids[6], ids[5]]
    older = store.list_events(newest_first=True, limit=2, before_id=newest[-1].id)
    assert [e.id for e in older] == [ids[4], ids[3]]


def test_bad_event_input(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="invalid event action"):
        store.append_event("alice", "Promote Now", source="cli:alice")
    with pytest.raises(InvalidInputError, match="event actor must not be empty"):
        store.append_event("", "promote", source="cli:alice")
    with pytest.raises(InvalidInputError, match="event source must not be empty"):
        store.append_event("alice", "promote", source="")
    with pytest.raises(InvalidInputError, match="limit must be an integer from 1 to 1000"):
        store.list_events(limit=5000)
    assert store.list_events() == []


def test_the_api_offers_no_way_to_change_or_remove_events() -> None:
    names = [
        n for n in dir(Store) + dir(StoreTransaction) if "event" in n and not n.startswith("_")
    ]
    assert sorted(set(names)) == ["append_event", "list_events"]
