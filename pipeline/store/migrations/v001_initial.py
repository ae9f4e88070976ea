"""Version 1: the first schema.

A frozen copy of the tables as berth first shipped them. Never edit this file: a
database created by it must keep upgrading through every later migration.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from pipeline.store.columns import ID, JSONDocument, UTCDateTime

DESCRIPTION = "initial schema"

metadata = MetaData()

apps = Table(
    "apps",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("repo", String(2000), nullable=False),
    Column("branch", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

builds = Table(
    "builds",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("app", String(100), ForeignKey("apps.name"), nullable=False),
    Column("commit", String(64), nullable=False),
    Column("state", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("digest", String(200), nullable=True),
    Column("worker", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("app", "commit", name="uq_builds_app_commit"),
    Index("ix_builds_state", "state", "id"),
)

releases = Table(
    "releases",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("app", String(100), ForeignKey("apps.name"), nullable=False),
    Column("commit", String(64), nullable=False),
    Column("digest", String(200), nullable=False),
    Column("spec", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("app", "commit", name="uq_releases_app_commit"),
)

environments = Table(
    "environments",
    metadata,
    Column("app", String(100), ForeignKey("apps.name"), nullable=False),
    Column("env", String(100), nullable=False),
    Column("stable_release_id", ID, ForeignKey("releases.id"), nullable=True),
    Column("previous_release_id", ID, ForeignKey("releases.id"), nullable=True),
    Column("pinned", Boolean, nullable=False),
    Column("lock_holder", String(255), nullable=True),
    Column("lock_reason", Text, nullable=True),
    Column("locked_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("app", "env", name="pk_environments"),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("app", String(100), ForeignKey("apps.name"), nullable=False),
    Column("env", String(100), nullable=False),
    Column("from_release_id", ID, ForeignKey("releases.id"), nullable=True),
    Column("to_release_id", ID, ForeignKey("releases.id"), nullable=False),
    Column("phase", String(40), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("weight", Integer, nullable=False),
    Column("state", JSONDocument, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    CheckConstraint("weight >= 0 AND weight <= 100", name="ck_rollouts_weight"),
    CheckConstraint("step_index >= 0", name="ck_rollouts_step_index"),
    Index("ix_rollouts_subject", "app", "env", "id"),
)
Index(
    "uq_rollouts_active",
    rollouts.c.app,
    rollouts.c.env,
    unique=True,
    sqlite_where=rollouts.c.finished_at.is_(None),
    postgresql_where=rollouts.c.finished_at.is_(None),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("release_id", ID, ForeignKey("releases.id"), nullable=False),
    Column("env", String(100), nullable=False),
    Column("approver", String(255), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("lapsed_at", UTCDateTime, nullable=True),
    UniqueConstraint("release_id", "env", "approver", name="uq_approvals_release_env_approver"),
)

hosts = Table(
    "hosts",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("address", String(255), nullable=False),
    Column("labels", JSONDocument, nullable=False),
    Column("last_heartbeat", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("provider", String(40), nullable=False),
    Column("delivery_id", String(255), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("provider", "delivery_id", name="pk_deliveries"),
    Index("ix_deliveries_received_at", "received_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(100), nullable=False),
    Column("source", String(500), nullable=False),
    Column("app", String(100), nullable=True),
    Column("env", String(100), nullable=True),
    Column("release_id", ID, nullable=True),
    Column("detail", JSONDocument, nullable=False),
)


def apply(conn: Connection) -> None:
    # checkfirst=False: a database that already has tables of these names is not ours,
    # and failing loudly beats adopting it.
    metadata.create_all(conn, checkfirst=False)
