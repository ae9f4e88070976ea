"""Notifications: events from the store posted to a real local webhook server, in the
background, with retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.chatops.notify import (
    EventWatcher,
    NotificationTarget,
    Notifier,
    Poster,
    notification_text,
)
from pipeline.store import Event, Store, default_url
from tests.promote.support import recorder

pytestmark = pytest.mark.integration


def test_events_become_posts_per_target_with_retries(tmp_path: Path) -> None:
    store = Store.open(default_url(tmp_path))
    store.upsert_app("demo", "https://git.example.com/demo.git", "main")
    store.upsert_app("web", "https://git.example.com/web.git", "main")
    store.append_event("berth", "build.failed", source="system:x", app="demo",
                       detail={"commit": "a" * 40, "reason": "old"})  # fmt: skip
    poster = Poster(attempts=3, backoff=0.01)
    notifier = Notifier(poster)
    notifier.start()
    try:
        with recorder() as hook:
            hook.statuses = [500, 503]  # the first two attempts fail: retried
            targets = [
                NotificationTarget(hook.url + "/all"),
                NotificationTarget(
                    hook.url + "/prod", apps=frozenset({"demo"}), envs=frozenset({"prod"})
                ),
            ]
            watcher = EventWatcher(store, notifier, targets)  # starts after existing events
            store.append_event("berth", "gate.failed", source="system:gates", app="demo",
                               env="functional-test", release_id=None,
                               detail={"gate": "functional", "message": "exit 3"})  # fmt: skip
            store.append_event(
                "alice", "approval.added", source="cli:alice", app="demo", env="prod"
            )
            store.append_event("berth", "approval.needed", source="system:gates", app="demo",
                               env="prod", detail={"required": 2, "approvers": ["alice", "bob"]})  # fmt: skip
            store.append_event("berth", "release.entered", source="system:x", app="web", env="prod")
            assert watcher.poll_once() == 4
            assert notifier.drain(10)
            posts = hook.wait_for(4)
            assert hook.attempts == 6
            assert watcher.poll_once() == 0
    finally:
        notifier.stop()
        poster.close()
        store.close()
    by_path: dict[str, list[str]] = {}
    for post in posts:
        by_path.setdefault(post["path"], []).append(post["text"])
    assert sorted(by_path["/prod"]) == [
        ":raising_hand: demo/prod: a release needs 2 approval(s) from alice, bob: "
        "/berth approve demo prod"
    ]
    assert len(by_path["/all"]) == 3
    assert any("failed the functional gate (exit 3)" in text for text in by_path["/all"])
    assert not any("old" in text for text in by_path["/all"])


@pytest.mark.unit
def test_which_events_are_told() -> None:
    from datetime import UTC, datetime

    def event(action: str, **detail: object) -> Event:
        return Event(1, datetime.now(UTC), "berth", action, "system:x", "demo", "prod", 7, detail)

    assert notification_text(event("approval.added")) is None
    assert notification_text(event("gate.passed", gate="none")) is None
    assert (
        notification_text(event("release.entered"))
        == ":arrow_right: demo/prod: release 7 is running"
    )
    assert notification_text(event("rollout.rolled_back", message="health")) == (
        ":arrows_counterclockwise: demo/prod: rollout of release 7 rolled back (health)"
    )


def test_a_dead_webhook_gives_up_after_its_attempts() -> None:
    with recorder() as hook:
        hook.statuses = [500] * 10
        poster = Poster(attempts=3, backoff=0.01)
        try:
            assert poster.post(hook.url, {"text": "x"}) is False
            assert hook.attempts == 3
            hook.statuses = [404]
            assert poster.post(hook.url, {"text": "x"}) is False
            assert hook.attempts == 4  # a 4xx is final
        finally:
            poster.close()
