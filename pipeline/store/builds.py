"""Builds: one per (app, commit), moved through their states by the build queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, Select, select, update

from pipeline.store.base import (
    Operations,
    check_commit,
    check_digest,
    check_limit,
    check_name,
    check_text,
    require_app,
)
from pipeline.store.database import insert_ignoring_conflict
from pipeline.store.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.store.schema import builds


class BuildState(StrEnum):
    """Where a build is. ``succeeded`` is final; failed, skipped, cancelled and
    interrupted builds may be queued again."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """True for every state but queued and running."""
        return self not in (BuildState.QUEUED, BuildState.RUNNING)


# from -> the states it may move to
BUILD_TRANSITIONS: dict[BuildState, frozenset[BuildState]] = {
    BuildState.QUEUED: frozenset({BuildState.RUNNING, BuildState.SKIPPED, BuildState.CANCELLED}),
    BuildState.RUNNING: frozenset(
        {BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED, BuildState.INTERRUPTED}
    ),
    BuildState.SUCCEEDED: frozenset(),
    BuildState.FAILED: frozenset({BuildState.QUEUED}),
    BuildState.SKIPPED: frozenset({BuildState.QUEUED}),
    BuildState.CANCELLED: frozenset({BuildState.QUEUED}),
    BuildState.INTERRUPTED: frozenset({BuildState.QUEUED}),
}


@dataclass(frozen=True)
class Build:
    """One commit of an app being turned into an image; ``digest`` is set once it succeeded."""

    id: int
    app: str
    commit: str
    state: BuildState
    reason: str
    digest: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


def _build(row: Row[Any]) -> Build:
    return Build(
        id=int(row.id),
        app=row.app,
        commit=row.commit,
        state=BuildState(row.state),
        reason=row.reason,
        digest=row.digest,
        worker=row.worker,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
    )


def _state(value: BuildState | str) -> BuildState:
    try:
        return BuildState(value)
    except ValueError:
        known = ", ".join(s.value for s in BuildState)
        raise InvalidInputError(f"unknown build state {value!r}: expected one of {known}") from None


class BuildOperations(Operations):
    """Create builds exactly once per commit, claim them, and record how they ended."""

    def create_build(self, app: str, commit: str) -> tuple[Build, bool]:
        """Queue a build of ``commit`` unless one exists; return it and whether it is new.

        However many webhook deliveries and polls race here, one row per (app, commit)
        wins; every caller gets that row back.
        """
        check_commit(commit)
        now = self._now()
        with self._tx() as conn:
            require_app(conn, app)
            created = insert_ignoring_conflict(
                conn,
                builds,
                {
                    "app": app,
                    "commit": commit,
                    "state": BuildState.QUEUED.value,
                    "reason": "",
                    "created_at": now,
                    "updated_at": now,
                },
                ["app", "commit"],
            )
            row = conn.execute(
                select(builds).where(builds.c.app == app, builds.c.commit == commit)
            ).one()
        return _build(row), created

    def get_build(self, build_id: int) -> Build:
        """Build ``build_id``; :class:`NotFoundError` when there is none."""
        with self._tx(write=False) as conn:
            row = conn.execute(select(builds).where(builds.c.id == build_id)).first()
        if row is None:
            raise NotFoundError(f"unknown build {build_id}: no such build in the state store")
        return _build(row)

    def find_build(self, app: str, commit: str) -> Build | None:
        """The build of ``commit`` of ``app``, if there is one."""
        check_name("app", app)
        check_commit(commit)
        with self._tx(write=False) as conn:
            row = conn.execute(
                select(builds).where(builds.c.app == app, builds.c.commit == commit)
            ).first()
        return None if row is None else _build(row)

    def list_builds(
        self,
        app: str | None = None,
        state: BuildState | str | None = None,
        *,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Build]:
        """Builds, newest first; ``before_id`` pages further back."""
        check_limit(limit)
        query = select(builds).order_by(builds.c.id.desc()).limit(limit)
        if app is not None:
            query = query.where(builds.c.app == check_name("app", app))
        if state is not None:
            query = query.where(builds.c.state == _state(state).value)
        if before_id is not None:
            query = query.where(builds.c.id < before_id)
        with self._tx(write=False) as conn:
            rows = conn.execute(query).all()
        return [_build(row) for row in rows]

    def claim_next_build(self, worker: str, *, apps: Sequence[str] | None = None) -> Build | None:
        """Atomically move the oldest queued build (of ``apps``, if given) to running for
        ``worker``; None when nothing is queued. Two workers never claim the same build."""
        check_text("worker", worker)
        query: Select[Any] = (
            select(builds)
            .where(builds.c.state == BuildState.QUEUED.value)
            .order_by(builds.c.id)
            .limit(1)
            # PostgreSQL: concurrent claimers pass over each other's rows instead of
            # queueing behind them; SQLite's write lock already serialises claimers.
            .with_for_update(skip_locked=True)
        )
        if apps is not None:
            query = query.where(builds.c.app.in_([check_name("app", a) for a in apps]))
        now = self._now()
        with self._tx() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            conn.execute(
                update(builds)
                .where(builds.c.id == row.id)
                .values(
                    state=BuildState.RUNNING.value,
                    worker=worker,
                    reason="",
                    started_at=now,
                    updated_at=now,
                )
            )
            claimed = conn.execute(select(builds).where(builds.c.id == row.id)).one()
        return _build(claimed)

    def set_build_state(
        self,
        build_id: int,
        state: BuildState | str,
        *,
        reason: str = "",
        digest: str | None = None,
    ) -> Build:
        """Move build ``build_id`` to ``state`` if :data:`BUILD_TRANSITIONS` allows it.

        ``digest`` (the pushed image) is required for ``succeeded`` and refused otherwise.
        Queuing a build again clears its worker, digest and times.
        """
        target = _state(state)
        check_text("reason", reason, limit=10_000, allow_empty=True)
        if target is BuildState.SUCCEEDED:
            if digest is None:
                raise InvalidInputError(
                    f"build {build_id}: a succeeded build needs the digest of its image"
                )
            digest = check_digest(digest)
        elif digest is not None:
            raise InvalidInputError(
                f"build {build_id}: only a succeeded build has an image digest ({target} given)"
            )
        now = self._now()
        with self._tx() as conn:
            row = conn.execute(
                select(builds).where(builds.c.id == build_id).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"unknown build {build_id}: no such build in the state store")
            current = BuildState(row.state)
            if target not in BUILD_TRANSITIONS[current]:
                allowed = ", ".join(sorted(BUILD_TRANSITIONS[current])) or "nothing"
                raise ConflictError(
                    f"build {build_id} ({row.app}@{row.commit[:12]}) is {current}; it cannot "
                    f"become {target} (from {current} it may become: {allowed})"
                )
            values: dict[str, Any] = {"state": target.value, "reason": reason, "updated_at": now}
            if target is BuildState.QUEUED:
                values |= {"worker": None, "digest": None, "started_at": None, "finished_at": None}
            elif target is BuildState.RUNNING:
                values |= {"started_at": now}
            else:
                values |= {"finished_at": now, "digest": digest}
            conn.execute(update(builds).where(builds.c.id == build_id).values(values))
            changed = conn.execute(select(builds).where(builds.c.id == build_id)).one()
        return _build(changed)

    def interrupt_running_builds(self, reason: str, *, worker: str | None = None) -> list[Build]:
        """Mark running builds (of ``worker``, if given) interrupted: what a control plane
        does at start-up for builds its previous life left half done."""
        check_text("reason", reason, limit=10_000)
        now = self._now()
        condition = builds.c.state == BuildState.RUNNING.value
        if worker is not None:
            condition = condition & (builds.c.worker == worker)
        with self._tx() as conn:
            ids = [
                int(r.id)
                for r in conn.execute(select(builds.c.id).where(condition).with_for_update())
            ]
            if not ids:
                return []
            conn.execute(
                update(builds)
                .where(builds.c.id.in_(ids))
                .values(
                    state=BuildState.INTERRUPTED.value,
                    reason=reason,
                    finished_at=now,
                    updated_at=now,
                )
            )
            rows = conn.execute(select(builds).where(builds.c.id.in_(ids)).order_by(builds.c.id))
            return [_build(row) for row in rows]
