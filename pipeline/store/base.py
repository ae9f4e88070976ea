"""What every group of store operations shares: the transaction hook, the clock, checks.

Each noun (apps, builds, …) is a mixin of :class:`Operations` in its own module. The
mixins only ask ``self._tx()`` for a connection inside a transaction: :class:`~pipeline.
store.store.Store` opens one transaction per call, :class:`~pipeline.store.store.
StoreTransaction` hands out the one transaction it is part of, so several calls can
commit together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from pipeline.store.clock import Clock
from pipeline.store.errors import InvalidInputError, NotFoundError
from pipeline.store.schema import NAME, TEXT, apps, releases
from runners.errors import DigestError
from runners.oci.digest import Digest

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

MAX_PAGE = 1000


class Operations:
    """Base of the store's operation mixins: a transaction source and a clock."""

    _clock: Clock

    def _tx(self, *, write: bool = True) -> AbstractContextManager[Connection]:
        """A connection inside a transaction; ``write=False`` promises only reads."""
        raise NotImplementedError

    def _now(self) -> datetime:
        return self._clock.now()


def check_name(kind: str, value: str) -> str:
    """An app or environment name: lowercase letters, digits, ``.``, ``_``, ``-``."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or len(value) > NAME:
        raise InvalidInputError(
            f"invalid {kind} name {value!r}: use 1-{NAME} lowercase letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )
    return value


def check_text(kind: str, value: str, *, limit: int = TEXT, allow_empty: bool = False) -> str:
    """Free text with a length limit (people, hosts, reasons)."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{kind} must be a string (got {type(value).__name__})")
    if not allow_empty and not value.strip():
        raise InvalidInputError(f"{kind} must not be empty")
    if len(value) > limit:
        raise InvalidInputError(f"{kind} is {len(value)} characters long; the limit is {limit}")
    return value


def check_commit(value: str) -> str:
    """A full git commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits."""
    if not isinstance(value, str) or not _COMMIT_RE.fullmatch(value):
        raise InvalidInputError(
            f"invalid commit {value!r}: expected a full commit id (40 or 64 lowercase hex "
            "digits), not a branch name or an abbreviation"
        )
    return value


def check_digest(value: str) -> str:
    """An OCI content digest such as ``sha256:…``."""
    try:
        return str(Digest.parse(value))
    except (DigestError, TypeError) as exc:
        raise InvalidInputError(str(exc)) from exc


def check_json_object(kind: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-serialisable mapping, copied so later changes by the caller do not leak in."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{kind} must be a mapping (got {type(value).__name__})")
    try:
        copied = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{kind} is not JSON-serialisable: {exc}") from exc
    assert isinstance(copied, dict)
    return copied


def check_limit(limit: int) -> int:
    """A page size: 1..MAX_PAGE, so no caller can ask for an unbounded read."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be an integer from 1 to {MAX_PAGE} (got {limit!r})")
    return limit


def require_app(conn: Connection, app: str) -> None:
    """Raise :class:`NotFoundError` unless ``app`` is registered."""
    check_name("app", app)
    if conn.execute(select(apps.c.name).where(apps.c.name == app)).first() is None:
        raise NotFoundError(
            f"unknown app {app!r}: it is not in the state store; add it to the service "
            "config (apps:) so berth registers it"
        )


def require_release(conn: Connection, release_id: int, *, app: str | None = None) -> str:
    """Raise :class:`NotFoundError` unless release ``release_id`` exists (of ``app``);
    return the release's app."""
    if isinstance(release_id, bool) or not isinstance(release_id, int):
        raise InvalidInputError(f"release id must be an integer (got {release_id!r})")
    found = conn.execute(select(releases.c.app).where(releases.c.id == release_id)).first()
    if found is None:
        raise NotFoundError(f"unknown release {release_id}: no such release in the state store")
    if app is not None and found.app != app:
        raise InvalidInputError(f"release {release_id} belongs to app {found.app!r}, not {app!r}")
    return str(found.app)


def check_time(kind: str, value: datetime) -> datetime:
    """An aware datetime (any zone), for timestamps callers pass in."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInputError(f"{kind} must be an aware datetime in UTC (got {value!r})")
    return value
