"""Opening a database: URL rules, engine settings per backend, conflict-aware inserts.

- ``sqlite:///PATH`` (the default, ``DATA/berth.db``): WAL journal so readers never block
  the writer, foreign keys enforced, a busy timeout so a writer waits for another instead
  of failing. berth issues ``BEGIN`` itself (``BEGIN IMMEDIATE`` for writes): the
  ``sqlite3`` module's own transaction handling neither covers DDL nor takes the write
  lock up front, and a deferred transaction that later writes can fail with "database is
  locked" no matter the timeout.
- ``postgresql://…`` (or ``postgres://``, ``postgresql+psycopg://``): the psycopg 3 driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pipeline.errors import StoreError

DATABASE_FILE = "berth.db"
BUSY_TIMEOUT_SECONDS = 30.0
# Execution option read by the SQLite "begin" hook: "IMMEDIATE" or "DEFERRED".
SQLITE_BEGIN = "berth_sqlite_begin"


def default_url(data_dir: Path) -> str:
    """The default database: SQLite in ``data_dir``."""
    return f"sqlite:///{data_dir / DATABASE_FILE}"


def normalize_url(url: str) -> URL:
    """Parse ``url`` and pick berth's driver for it; raise :class:`StoreError` if unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"invalid database URL {url!r}: expected sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB"
        ) from exc
    # Read from the text: asking SQLAlchemy would load a dialect, and "postgres" has none.
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StoreError(f"database URL {_safe(parsed)}: use plain sqlite:///PATH")
        if not parsed.database or parsed.database == ":memory:":
            raise StoreError(
                f"database URL {_safe(parsed)} names no file: berth keeps its state in a "
                "file, e.g. sqlite:///var/lib/berth/berth.db"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise StoreError(
                f"database URL {_safe(parsed)}: berth talks to PostgreSQL through psycopg 3; "
                "write postgresql://… or postgresql+psycopg://…"
            )
        return parsed.set(drivername="postgresql+psycopg")
    raise StoreError(
        f"unsupported database URL {_safe(parsed)}: berth supports sqlite:///PATH and "
        "postgresql://USER@HOST:PORT/DB"
    )


def create_store_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> Engine:
    """An engine for ``url`` with berth's settings; SQLite files are switched to WAL."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout)
    return create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args={"connect_timeout": max(1, int(busy_timeout))},
    )


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    path = Path(url.database or "")
    if not path.parent.is_dir():
        raise StoreError(
            f"cannot open the SQLite database {path}: directory {path.parent} does not exist "
            "(create the data directory first)"
        )
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # berth emits BEGIN itself, see above
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            # Outside any transaction (SQLite ignores it inside one); a no-op once the
            # file is in WAL mode, which persists in the file.
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode, NORMAL still survives a killed process (every commit is in the
            # WAL before COMMIT returns); only a power cut can undo the last commits. It
            # spares an fsync per commit, which is most of a webhook delivery's cost.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")

    try:
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the SQLite database {path}: {first_line(exc)}") from exc
    if str(mode).lower() != "wal":
        engine.dispose()
        raise StoreError(
            f"cannot switch the SQLite database {path} to WAL mode (it stays in {mode!r}); "
            "put the data directory on a local filesystem"
        )
    return engine


def insert_ignoring_conflict(
    conn: Connection, table: Table, values: Mapping[str, Any], conflict: Sequence[str]
) -> bool:
    """Insert one row unless it collides on the unique columns ``conflict``.

    True when the row was inserted. Atomic on both backends: PostgreSQL waits for a
    concurrent insert of the same key to commit, then skips.
    """
    stmt = (
        _dialect_insert(conn, table)
        .values(dict(values))
        .on_conflict_do_nothing(index_elements=list(conflict))
        # A returned row is the only portable signal: psycopg reports no rowcount here.
        .returning(*table.primary_key.columns)
    )
    return conn.execute(stmt).first() is not None


def upsert(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    conflict: Sequence[str],
    update: Mapping[str, Any],
) -> None:
    """Insert one row, or update the existing row with ``update`` when it collides."""
    stmt = _dialect_insert(conn, table).values(dict(values))
    conn.execute(stmt.on_conflict_do_update(index_elements=list(conflict), set_=dict(update)))


def _dialect_insert(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def first_line(exc: SQLAlchemyError) -> str:
    """The driver's own message of ``exc`` without SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
