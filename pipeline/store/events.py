"""The audit trail: who did what, when, from where. Append-only.

There is deliberately no API to change or delete an event. ``source`` says where the
request came from, in one of the forms the helpers below build:

- ``webhook:<provider>/<delivery id>`` - a git host's webhook delivery
- ``chat:<user>@<team>/<channel>``   - a chat slash command
- ``cli:<token name>``               - the CLI or REST API, by the name of its token
- ``system:<component>``             - berth itself (scheduler, rollout engine, …)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text

from pipeline.store.base import (
    Operations,
    check_json_object,
    check_limit,
    check_name,
    check_text,
)
from pipeline.store.errors import InvalidInputError
from pipeline.store.schema import NAME, events

# PostgreSQL: appends take this advisory lock until commit, so ids become visible in
# increasing order and an ``after_id`` cursor never skips an event committed late.
_APPEND_LOCK_KEY = 0x6265727469

_ACTION_RE = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*")


def webhook_source(provider: str, delivery_id: str) -> str:
    """The source of something a webhook delivery caused."""
    return f"webhook:{provider}/{delivery_id}"


def chat_source(user: str, team: str, channel: str) -> str:
    """The source of a chat command."""
    return f"chat:{user}@{team}/{channel}"


def cli_source(token_name: str) -> str:
    """The source of a CLI or REST API request, by its token's name."""
    return f"cli:{token_name}"


def system_source(component: str) -> str:
    """The source of a decision berth made by itself."""
    return f"system:{component}"


@dataclass(frozen=True)
class Event:
    """One entry of the audit trail. ``id`` increases with every append."""

    id: int
    at: datetime
    actor: str
    action: str
    source: str
    app: str | None
    env: str | None
    release_id: int | None
    detail: Mapping[str, Any]


def _event(row: Row[Any]) -> Event:
    return Event(
        id=int(row.id),
        at=row.at,
        actor=row.actor,
        action=row.action,
        source=row.source,
        app=row.app,
        env=row.env,
        release_id=None if row.release_id is None else int(row.release_id),
        detail=row.detail,
    )


def _check_action(action: str) -> str:
    if not isinstance(action, str) or len(action) > NAME or not _ACTION_RE.fullmatch(action):
        raise InvalidInputError(
            f"invalid event action {action!r}: dotted lowercase words such as 'rollout.started'"
        )
    return action


class EventOperations(Operations):
    """Append to and read the audit trail."""

    def append_event(
        self,
        actor: str,
        action: str,
        *,
        source: str,
        app: str | None = None,
        env: str | None = None,
        release_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Event:
        """Append one event, stamped now. Subjects are recorded as given; they need not
        exist (an event may record a refused request for an unknown app)."""
        check_text("event actor", actor)
        _check_action(action)
        check_text("event source", source, limit=500)
        if app is not None:
            check_name("app", app)
        if env is not None:
            check_name("environment", env)
        if release_id is not None and (
            isinstance(release_id, bool) or not isinstance(release_id, int)
        ):
            raise InvalidInputError(f"release id must be an integer (got {release_id!r})")
        document = check_json_object("event detail", detail or {})
        now = self._now()
        with self._tx() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
            new_id = conn.execute(
                events.insert()
                .values(
                    at=now,
                    actor=actor,
                    action=action,
                    source=source,
                    app=app,
                    env=env,
                    release_id=release_id,
                    detail=document,
                )
                .returning(events.c.id)
            ).scalar_one()
        return Event(int(new_id), now, actor, action, source, app, env, release_id, document)

    def list_events(
        self,
        *,
        app: str | None = None,
        env: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        source: str | None = None,
        source_prefix: str | None = None,
        release_id: int | None = None,
        after_id: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events matching every filter given, at most ``limit`` of them.

        Oldest first, from just after ``after_id`` (a cursor: pass the last id seen to
        read on); or with ``newest_first``, newest first from just before ``before_id``.
        """
        check_limit(limit)
        query = select(events).limit(limit)
        query = query.order_by(events.c.id.desc() if newest_first else events.c.id)
        if app is not None:
            query = query.where(events.c.app == app)
        if env is not None:
            query = query.where(events.c.env == env)
        if actor is not None:
            query = query.where(events.c.actor == actor)
        if action is not None:
            query = query.where(events.c.action == action)
        if source is not None:
            query = query.where(events.c.source == source)
        if source_prefix is not None:
            query = query.where(events.c.source.startswith(source_prefix, autoescape=True))
        if release_id is not None:
            query = query.where(events.c.release_id == release_id)
        if after_id is not None:
            query = query.where(events.c.id > after_id)
        if before_id is not None:
            query = query.where(events.c.id < before_id)
        with self._tx(write=False) as conn:
            return [_event(row) for row in conn.execute(query)]
