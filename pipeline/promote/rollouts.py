"""What promotion needs from the rest of berth, as protocols: starting rollouts and
knowing an environment's entry address.

Promotion decides; it never places containers. :class:`Rollouts` is implemented by the
rollout engine (``pipeline/rollout``), which calls
:meth:`~pipeline.promote.service.PromotionService.environment_reached` when the
environment is at 100 % and healthy. :class:`SwitchRollouts` is the second real
implementation: it makes the release stable at once (a chain without hosts, and tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pipeline.store import Store

__all__ = ["EntryPoints", "Rollouts", "StaticEntryPoints", "SwitchRollouts"]


class Rollouts(Protocol):
    """Starts moving an environment to a release."""

    def start(self, app: str, env: str, release_id: int, *, actor: str, source: str) -> bool:
        """Begin the rollout; True when it already completed (the caller then reports the
        environment reached), False when the engine will report it later."""
        ...


class SwitchRollouts:
    """Makes the release the environment's stable one immediately (and unpins it)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def start(self, app: str, env: str, release_id: int, *, actor: str, source: str) -> bool:
        self._store.set_stable_release(app, env, release_id, pinned=False)
        return True


class EntryPoints(Protocol):
    """Where an environment of an app is reached (its router), for the gates."""

    def url(self, app: str, env: str) -> str | None:
        """``http://ADDR:PORT`` of (app, env), or None while it has none."""
        ...


class StaticEntryPoints:
    """Entry addresses from a fixed table: ``{(app, env): url}``."""

    def __init__(self, table: Mapping[tuple[str, str], str]) -> None:
        self._table = dict(table)

    def url(self, app: str, env: str) -> str | None:
        return self._table.get((app, env))
