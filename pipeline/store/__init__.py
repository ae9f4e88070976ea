"""berth's persistent state: SQLAlchemy Core on SQLite (default) or PostgreSQL.

- :class:`Store` - the typed API (frozen records in, frozen records out)
- :mod:`~pipeline.store.schema` - the tables; :mod:`~pipeline.store.migrations` - how
  they came to be
- :mod:`~pipeline.store.clock` - where timestamps come from

Identifiers: apps and hosts by name; builds, releases, rollouts, approvals and events by
integer ids the database assigns (increasing, never reused). Timestamps are aware UTC
datetimes. Mappings in records (specs, states, labels, details) are plain JSON values.
"""

from __future__ import annotations

from pipeline.store.approvals import Approval
from pipeline.store.apps import App
from pipeline.store.builds import BUILD_TRANSITIONS, Build, BuildState
from pipeline.store.clock import Clock, FixedClock, SystemClock
from pipeline.store.database import default_url
from pipeline.store.environments import EnvironmentLock, EnvironmentState
from pipeline.store.errors import (
    ConflictError,
    InvalidInputError,
    LockedError,
    MigrationError,
    NotFoundError,
    StoreError,
)
from pipeline.store.events import Event, chat_source, cli_source, system_source, webhook_source
from pipeline.store.hosts import Host
from pipeline.store.migrations import LATEST_VERSION
from pipeline.store.releases import Release
from pipeline.store.rollouts import Rollout
from pipeline.store.store import Store, StoreTransaction

__all__ = [
    "BUILD_TRANSITIONS",
    "LATEST_VERSION",
    "App",
    "Approval",
    "Build",
    "BuildState",
    "Clock",
    "ConflictError",
    "EnvironmentLock",
    "EnvironmentState",
    "Event",
    "FixedClock",
    "Host",
    "InvalidInputError",
    "LockedError",
    "MigrationError",
    "NotFoundError",
    "Release",
    "Rollout",
    "Store",
    "StoreError",
    "StoreTransaction",
    "SystemClock",
    "chat_source",
    "cli_source",
    "default_url",
    "system_source",
    "webhook_source",
]
