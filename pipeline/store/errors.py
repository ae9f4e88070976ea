"""The store's refinements of :class:`~pipeline.errors.StoreError`.

::

    StoreError                 pipeline.errors: could not open, read or write the store
    ├── MigrationError         pipeline.errors: a migration failed / the schema is newer
    ├── NotFoundError          the app, build, release, rollout or host does not exist
    ├── InvalidInputError      an argument is malformed (bad name, commit, digest, weight…)
    └── ConflictError          the change collides with the current state
        └── LockedError        the environment is locked by someone else

The REST API maps ``NotFoundError`` to 404, ``InvalidInputError`` to 400 and
``ConflictError`` to 409; anything else is a 500.
"""

from __future__ import annotations

from pipeline.errors import MigrationError, StoreError

__all__ = [
    "ConflictError",
    "InvalidInputError",
    "LockedError",
    "MigrationError",
    "NotFoundError",
    "StoreError",
]


class NotFoundError(StoreError):
    """The thing named does not exist in the state store."""


class InvalidInputError(StoreError):
    """An argument given to the store is malformed; the message names it and the rule."""


class ConflictError(StoreError):
    """The change collides with the current state (a duplicate, a stale version, a bad
    state transition); reload and decide again."""


class LockedError(ConflictError):
    """The environment is locked by another holder."""

    def __init__(self, message: str, *, holder: str, reason: str) -> None:
        super().__init__(message)
        self.holder = holder
        self.reason = reason
