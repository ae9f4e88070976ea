"""Queueing a commit: one build per (app, commit), newer commits supersede queued ones.

:func:`enqueue` works inside the caller's store transaction, so that a webhook's
delivery record, the build and the audit events commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.store import Build, BuildState, StoreTransaction


@dataclass(frozen=True)
class Enqueued:
    """What queueing a commit did."""

    build: Build
    created: bool
    """False when the commit already had a build (a redelivery, a poll after a hook)."""
    superseded: tuple[Build, ...] = ()
    """Queued builds of older commits this one replaced (now skipped)."""


def enqueue(
    tx: StoreTransaction,
    app: str,
    commit: str,
    *,
    actor: str,
    source: str,
    supersede: bool = True,
    detail: dict[str, object] | None = None,
) -> Enqueued:
    """Queue a build of ``commit`` unless it has one; with ``supersede``, skip the
    app's builds that are still queued (never running ones) for older commits."""
    build, created = tx.create_build(app, commit)
    if not created:
        return Enqueued(build, False)
    tx.append_event(
        actor,
        "build.queued",
        source=source,
        app=app,
        detail={"build": build.id, "commit": commit, **(detail or {})},
    )
    skipped: list[Build] = []
    if supersede:
        for older in tx.list_builds(app, BuildState.QUEUED, limit=1000):
            if older.id >= build.id:
                continue
            reason = f"superseded by {commit[:12]} (build b-{build.id})"
            skipped.append(tx.set_build_state(older.id, BuildState.SKIPPED, reason=reason))
            tx.append_event(
                actor,
                "build.skipped",
                source=source,
                app=app,
                detail={"build": older.id, "commit": older.commit, "superseded_by": build.id},
            )
    return Enqueued(build, True, tuple(skipped))
