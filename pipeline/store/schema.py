"""The tables of the latest schema version, as the store's queries see them.

This module describes the schema *after* every migration in
:mod:`pipeline.store.migrations` has run; the migrations, not this module, create and
change tables. A test migrates an empty database and compares it with these tables, so
the two cannot drift apart unnoticed.

Identifiers: apps and hosts are keyed by their name; builds, releases, rollouts,
approvals and events by an integer id the database assigns (increasing, never reused).
Every timestamp is UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
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

NAME = 100  # app and environment names
TEXT = 255  # people, hosts, addresses, providers, delivery ids

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(TEXT), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

apps = Table(
    "apps",
    metadata,
    Column("name", String(NAME), primary_key=True),
    Column("repo", String(2000), nullable=False),
    Column("branch", String(TEXT), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

builds = Table(
    "builds",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("app", String(NAME), ForeignKey("apps.name"), nullable=False),
    Column("commit", String(64), nullable=False),
    Column("state", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("digest", String(200), nullable=True),
    Column("worker", String(TEXT), nullable=True),
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
    Column("app", String(NAME), ForeignKey("apps.name"), nullable=False),
    Column("commit", String(64), nullable=False),
    Column("digest", String(200), nullable=False),
    Column("spec", JSONDocument, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("author", String(TEXT), nullable=False, server_default=""),  # version 2
    Column("message", Text, nullable=False, server_default=""),  # version 2
    UniqueConstraint("app", "commit", name="uq_releases_app_commit"),
)

environments = Table(
    "environments",
    metadata,
    Column("app", String(NAME), ForeignKey("apps.name"), nullable=False),
    Column("env", String(NAME), nullable=False),
    Column("stable_release_id", ID, ForeignKey("releases.id"), nullable=True),
    Column("previous_release_id", ID, ForeignKey("releases.id"), nullable=True),
    Column("pinned", Boolean, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("app", "env", name="pk_environments"),
)

# version 2: split out of ``environments`` so that a lock exists without a deployed
# release and taking it is a single conflict-checked insert.
environment_locks = Table(
    "environment_locks",
    metadata,
    Column("app", String(NAME), ForeignKey("apps.name"), nullable=False),
    Column("env", String(NAME), nullable=False),
    Column("holder", String(TEXT), nullable=False),
    Column("reason", Text, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("app", "env", name="pk_environment_locks"),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("app", String(NAME), ForeignKey("apps.name"), nullable=False),
    Column("env", String(NAME), nullable=False),
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
# At most one unfinished rollout per (app, environment), enforced by the database.
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
    Column("env", String(NAME), nullable=False),
    Column("approver", String(TEXT), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("lapsed_at", UTCDateTime, nullable=True),
    UniqueConstraint("release_id", "env", "approver", name="uq_approvals_release_env_approver"),
)

hosts = Table(
    "hosts",
    metadata,
    Column("name", String(TEXT), primary_key=True),
    Column("address", String(TEXT), nullable=False),
    Column("labels", JSONDocument, nullable=False),
    Column("last_heartbeat", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("provider", String(40), nullable=False),
    Column("delivery_id", String(TEXT), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("provider", "delivery_id", name="pk_deliveries"),
    Index("ix_deliveries_received_at", "received_at"),
)

# Append-only: the store has no API that updates or deletes a row. Subjects are plain
# values, not foreign keys, so the record stays readable whatever happens to them.
events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(TEXT), nullable=False),
    Column("action", String(NAME), nullable=False),
    Column("source", String(500), nullable=False),
    Column("app", String(NAME), nullable=True),
    Column("env", String(NAME), nullable=True),
    Column("release_id", ID, nullable=True),
    Column("detail", JSONDocument, nullable=False),
    Index("ix_events_subject", "app", "env", "id"),  # version 2
)
