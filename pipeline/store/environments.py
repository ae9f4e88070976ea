"""Environment state per (app, environment): the stable release, the one before it (for
rollback), the pin, and the lock.

The store records; it does not decide. Whether a lock or a pin blocks a promotion is the
promotion policy's call (``pipeline/promote``), which reads this state first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from pipeline.store.base import Operations, check_name, check_text, require_app, require_release
from pipeline.store.database import insert_ignoring_conflict
from pipeline.store.errors import LockedError
from pipeline.store.schema import environment_locks, environments


@dataclass(frozen=True)
class EnvironmentLock:
    """Who holds an environment's lock, why, and since when."""

    holder: str
    reason: str
    since: datetime


@dataclass(frozen=True)
class EnvironmentState:
    """What runs in one environment of one app. ``updated_at`` is None until something
    was recorded; until then there is no stable release and no pin."""

    app: str
    env: str
    stable_release_id: int | None
    previous_release_id: int | None
    pinned: bool
    lock: EnvironmentLock | None
    updated_at: datetime | None

    @property
    def locked(self) -> bool:
        return self.lock is not None


def _lock(row: Row[Any] | None) -> EnvironmentLock | None:
    if row is None:
        return None
    return EnvironmentLock(holder=row.holder, reason=row.reason, since=row.since)


def _read(conn: Connection, app: str, env: str) -> EnvironmentState:
    row = conn.execute(
        select(environments).where(environments.c.app == app, environments.c.env == env)
    ).first()
    lock = conn.execute(
        select(environment_locks).where(
            environment_locks.c.app == app, environment_locks.c.env == env
        )
    ).first()
    if row is None:
        return EnvironmentState(app, env, None, None, False, _lock(lock), None)
    return EnvironmentState(
        app=app,
        env=env,
        stable_release_id=None if row.stable_release_id is None else int(row.stable_release_id),
        previous_release_id=(
            None if row.previous_release_id is None else int(row.previous_release_id)
        ),
        pinned=bool(row.pinned),
        lock=_lock(lock),
        updated_at=row.updated_at,
    )


def _locked_message(app: str, env: str, lock: EnvironmentLock) -> str:
    return (
        f"environment {env} of app {app!r} is locked by {lock.holder} since "
        f"{lock.since.isoformat()} ({lock.reason or 'no reason given'}); ask them to "
        "unlock it, or unlock it by force"
    )


class EnvironmentOperations(Operations):
    """Stable releases, pins and locks of environments."""

    def get_environment(self, app: str, env: str) -> EnvironmentState:
        """The state of ``env`` of ``app`` (empty when nothing was recorded yet)."""
        check_name("environment", env)
        with self._tx(write=False) as conn:
            require_app(conn, app)
            return _read(conn, app, env)

    def list_environments(self, app: str) -> list[EnvironmentState]:
        """Every environment of ``app`` that has a recorded state or a lock, by name."""
        with self._tx(write=False) as conn:
            require_app(conn, app)
            names = set(
                conn.execute(select(environments.c.env).where(environments.c.app == app)).scalars()
            ) | set(
                conn.execute(
                    select(environment_locks.c.env).where(environment_locks.c.app == app)
                ).scalars()
            )
            return [_read(conn, app, env) for env in sorted(names)]

    def set_stable_release(
        self, app: str, env: str, release_id: int, *, pinned: bool | None = None
    ) -> EnvironmentState:
        """Make ``release_id`` the stable release of ``env``; the old stable becomes the
        previous one (what a rollback returns to). ``pinned`` sets the pin too (a rollback
        pins, a promotion unpins); None leaves it as it is. Setting the current stable
        release again changes nothing but the pin."""
        check_name("environment", env)
        now = self._now()
        with self._tx() as conn:
            require_app(conn, app)
            require_release(conn, release_id, app=app)
            current = self._ensure_row(conn, app, env)
            values: dict[str, Any] = {"updated_at": now}
            if current.stable_release_id != release_id:
                values |= {
                    "stable_release_id": release_id,
                    "previous_release_id": current.stable_release_id,
                }
            if pinned is not None:
                values["pinned"] = pinned
            conn.execute(
                update(environments)
                .where(environments.c.app == app, environments.c.env == env)
                .values(values)
            )
            return _read(conn, app, env)

    def set_pinned(self, app: str, env: str, pinned: bool) -> EnvironmentState:
        """Pin ``env`` (no automatic promotion replaces its release) or unpin it."""
        check_name("environment", env)
        now = self._now()
        with self._tx() as conn:
            require_app(conn, app)
            self._ensure_row(conn, app, env)
            conn.execute(
                update(environments)
                .where(environments.c.app == app, environments.c.env == env)
                .values(pinned=pinned, updated_at=now)
            )
            return _read(conn, app, env)

    def lock_environment(self, app: str, env: str, holder: str, reason: str) -> EnvironmentState:
        """Take the lock of ``env`` for ``holder``. Taking it again as the same holder
        updates the reason; :class:`LockedError` when someone else holds it."""
        check_name("environment", env)
        check_text("lock holder", holder)
        check_text("lock reason", reason, limit=10_000, allow_empty=True)
        now = self._now()
        with self._tx() as conn:
            require_app(conn, app)
            taken = insert_ignoring_conflict(
                conn,
                environment_locks,
                {"app": app, "env": env, "holder": holder, "reason": reason, "since": now},
                ["app", "env"],
            )
            if not taken:
                held = _read(conn, app, env).lock
                assert held is not None
                if held.holder != holder:
                    raise LockedError(
                        _locked_message(app, env, held), holder=held.holder, reason=held.reason
                    )
                conn.execute(
                    update(environment_locks)
                    .where(environment_locks.c.app == app, environment_locks.c.env == env)
                    .values(reason=reason)
                )
            return _read(conn, app, env)

    def unlock_environment(self, app: str, env: str, *, holder: str | None = None) -> bool:
        """Release the lock of ``env``: only as its ``holder``, or by force when ``holder``
        is None. True when a lock was released, False when there was none."""
        check_name("environment", env)
        with self._tx() as conn:
            require_app(conn, app)
            held = _read(conn, app, env).lock
            if held is None:
                return False
            if holder is not None and held.holder != holder:
                raise LockedError(
                    _locked_message(app, env, held), holder=held.holder, reason=held.reason
                )
            result = conn.execute(
                delete(environment_locks).where(
                    environment_locks.c.app == app,
                    environment_locks.c.env == env,
                    environment_locks.c.holder == held.holder,
                )
            )
            return result.rowcount == 1

    def _ensure_row(self, conn: Connection, app: str, env: str) -> EnvironmentState:
        insert_ignoring_conflict(
            conn,
            environments,
            {"app": app, "env": env, "pinned": False, "updated_at": self._now()},
            ["app", "env"],
        )
        # Lock the row so concurrent writers of this environment take turns (PostgreSQL;
        # SQLite's write lock already does).
        conn.execute(
            select(environments.c.app)
            .where(environments.c.app == app, environments.c.env == env)
            .with_for_update()
        )
        return _read(conn, app, env)
