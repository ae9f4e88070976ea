"""Versioned schema migrations.

The schema's version is the highest row of the ``schema_version`` table (0 when the
table does not exist: an empty database). :data:`MIGRATIONS` is the ordered list of
steps; each step runs in its own transaction together with the row that records it, so a
failed step leaves the database at the previous version with nothing half-applied (both
SQLite and PostgreSQL have transactional DDL). Concurrent control planes starting at
once serialise on a lock: PostgreSQL's advisory lock, SQLite's write lock.

To change the schema: add ``vNNN_what.py`` with ``DESCRIPTION`` and ``apply(conn)``,
append it to :data:`MIGRATIONS`, and update :mod:`pipeline.store.schema` to match.
Never edit a released migration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import MigrationError
from pipeline.store.clock import Clock, SystemClock
from pipeline.store.database import first_line
from pipeline.store.migrations import v001_initial, v002_release_notes_and_locks
from pipeline.store.schema import schema_version

# Arbitrary but fixed: the key of the PostgreSQL advisory lock held while migrating.
_PG_LOCK_KEY = 0x6265727468


@dataclass(frozen=True)
class Migration:
    """One schema step: from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, v001_initial.DESCRIPTION, v001_initial.apply),
    Migration(2, v002_release_notes_and_locks.DESCRIPTION, v002_release_notes_and_locks.apply),
)


def check_sequence(migrations: Sequence[Migration]) -> int:
    """Check that ``migrations`` are numbered 1, 2, 3… and return the last version."""
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise MigrationError(
                f"migration list is out of order: position {index} holds version "
                f"{migration.version} ({migration.description!r}); versions must be 1, 2, 3…"
            )
    return len(migrations)


LATEST_VERSION = check_sequence(MIGRATIONS)


def current_version(conn: Connection) -> int:
    """The schema version of the database ``conn`` talks to (0 when it is empty)."""
    if not inspect(conn).has_table(schema_version.name):
        return 0
    found = conn.execute(select(func.max(schema_version.c.version))).scalar_one()
    return int(found or 0)


def migrate(
    engine: Engine,
    *,
    target: int | None = None,
    migrations: Sequence[Migration] = MIGRATIONS,
    clock: Clock | None = None,
) -> list[int]:
    """Upgrade the database to ``target`` (default: the latest); return the versions applied.

    Raises :class:`MigrationError` when the database is newer than ``target`` allows (it was
    written by a newer berth) or when a step fails.
    """
    latest = check_sequence(migrations)
    goal = latest if target is None else target
    if not 0 <= goal <= latest:
        raise MigrationError(f"cannot migrate to schema version {goal}: known are 1..{latest}")
    clock = clock or SystemClock()
    where = _describe(engine)
    applied: list[int] = []
    with engine.connect() as conn:
        _refuse_newer(where, _read_version(conn, where), latest)
        for migration in migrations[:goal]:
            try:
                with conn.begin():
                    _take_lock(conn)
                    version = current_version(conn)
                    _refuse_newer(where, version, latest)
                    if version >= migration.version:
                        continue  # done before, or by a concurrent control plane
                    schema_version.create(conn, checkfirst=True)
                    migration.apply(conn)
                    conn.execute(
                        schema_version.insert().values(
                            version=migration.version,
                            description=migration.description,
                            applied_at=clock.now(),
                        )
                    )
            except MigrationError:
                raise
            except SQLAlchemyError as exc:
                raise MigrationError(
                    f"schema migration to version {migration.version} "
                    f"({migration.description}) failed on {where}: {first_line(exc)}; the "
                    f"database was left at version {migration.version - 1}, unchanged by "
                    "this step. Fix the cause and start berth again."
                ) from exc
            applied.append(migration.version)
    return applied


def require_current(engine: Engine, *, latest: int = LATEST_VERSION) -> int:
    """Check that the database is exactly at ``latest`` without changing it."""
    where = _describe(engine)
    with engine.connect() as conn:
        version = _read_version(conn, where)
    _refuse_newer(where, version, latest)
    if version < latest:
        raise MigrationError(
            f"the state store at {where} is at schema version {version}, this berth needs "
            f"{latest}: run the migrations (open the store with migrate=True) first"
        )
    return version


def _read_version(conn: Connection, where: str) -> int:
    try:
        with conn.begin():
            return current_version(conn)
    except SQLAlchemyError as exc:
        raise MigrationError(
            f"cannot read the schema version of the state store at {where}: {first_line(exc)}"
        ) from exc


def _refuse_newer(where: str, version: int, latest: int) -> None:
    if version > latest:
        raise MigrationError(
            f"the state store at {where} has schema version {version}, but this berth only "
            f"knows versions up to {latest}: it was written by a newer berth. Upgrade berth "
            "(downgrading a database is not supported)."
        )


def _take_lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
