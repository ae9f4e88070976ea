"""Version 2: release author and message, environment locks in their own table, and an
index for the event log's subject filters.

- ``releases`` gains ``author`` and ``message`` (existing releases get empty strings).
- ``environments.lock_holder/lock_reason/locked_at`` move to ``environment_locks`` (one row
  per held lock), so an environment can be locked before anything is deployed to it and
  taking a lock is one conflict-checked insert. Held locks are copied, then the columns
  are dropped.
- ``events`` gains an index on ``(app, env, id)``.

Never edit this file once released; write version 3 instead.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from pipeline.store.columns import UTCDateTime

DESCRIPTION = "release author/message, environment_locks table, events subject index"

_metadata = MetaData()
# Only so the foreign key below can be resolved; this table already exists.
Table("apps", _metadata, Column("name", String(100), primary_key=True))

environment_locks = Table(
    "environment_locks",
    _metadata,
    Column("app", String(100), ForeignKey("apps.name"), nullable=False),
    Column("env", String(100), nullable=False),
    Column("holder", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("app", "env", name="pk_environment_locks"),
)


def apply(conn: Connection) -> None:
    # Both SQLite and PostgreSQL accept these statements as written.
    conn.execute(text("ALTER TABLE releases ADD COLUMN author VARCHAR(255) DEFAULT '' NOT NULL"))
    conn.execute(text("ALTER TABLE releases ADD COLUMN message TEXT DEFAULT '' NOT NULL"))

    environment_locks.create(conn, checkfirst=False)
    conn.execute(
        text(
            "INSERT INTO environment_locks (app, env, holder, reason, since) "
            "SELECT app, env, lock_holder, COALESCE(lock_reason, ''), "
            "COALESCE(locked_at, updated_at) "
            "FROM environments WHERE lock_holder IS NOT NULL"
        )
    )
    for column in ("lock_holder", "lock_reason", "locked_at"):
        conn.execute(text(f"ALTER TABLE environments DROP COLUMN {column}"))

    conn.execute(text("CREATE INDEX ix_events_subject ON events (app, env, id)"))
