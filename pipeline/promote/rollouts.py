"""What promotion needs from the rest of berth, as protocols: starting rollouts and
knowing an environment's entry address.

Promotion decides; it never places containers. :class:`Rollouts` is implemented by the
rollout engine (``pipeline/rollout``), which calls
:meth:`~pipeline.promote.service.PromotionService.environment_reached` when the
environment is at 100 % and healthy. :class:`SwitchRollouts` is the second real
implementation: it makes the release stable at once (a chain without hosts, and tests).

:class:`RolloutControl` is what people do to a rollout by hand (``berth abort``,
``resume``, ``retry``, ``rollback``); the rollout engine implements it, and so does
:class:`SwitchRollouts`, where nothing is ever in progress and a rollback is a switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pipeline.promote.errors import PromotionRefused
from pipeline.store import Store

__all__ = ["EntryPoints", "RolloutControl", "Rollouts", "StaticEntryPoints", "SwitchRollouts"]


class Rollouts(Protocol):
    """Starts moving an environment to a release."""

    def start(self, app: str, env: str, release_id: int, *, actor: str, source: str) -> bool:
        """Begin the rollout; True when it already completed (the caller then reports the
        environment reached), False when the engine will report it later."""
        ...


class RolloutControl(Protocol):
    """Commands people give a rollout. Each raises a berth error (a
    :class:`~pipeline.promote.errors.PromotionRefused` for a request that does not fit
    the rollout's state) and changes nothing when it cannot be done."""

    def abort(self, app: str, env: str, *, actor: str, source: str) -> object:
        """Back to the stable release; the rollout ends aborted."""
        ...

    def resume(self, app: str, env: str, *, actor: str, source: str) -> object:
        """Continue past an indefinite pause."""
        ...

    def retry(self, app: str, env: str, *, actor: str, source: str) -> object:
        """Start an aborted rollout again."""
        ...

    def rollback(self, app: str, env: str, *, to: int | None, actor: str, source: str) -> object:
        """Straight to the previous release (or ``to``) at 100 %, then pin."""
        ...


class SwitchRollouts:
    """Makes the release the environment's stable one immediately (and unpins it).

    As a :class:`RolloutControl`: nothing is ever in progress (abort, resume and retry
    are refused), and a rollback switches back at once and pins the environment.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def start(self, app: str, env: str, release_id: int, *, actor: str, source: str) -> bool:
        self._store.set_stable_release(app, env, release_id, pinned=False)
        return True

    def _nothing(self, verb: str, app: str, env: str) -> PromotionRefused:
        return PromotionRefused(
            f"cannot {verb} {app} in {env}: no rollout is in progress there (without a "
            "cluster, releases switch at once)",
            refusal="conflict",
        )

    def abort(self, app: str, env: str, *, actor: str, source: str) -> object:
        raise self._nothing("abort", app, env)

    def resume(self, app: str, env: str, *, actor: str, source: str) -> object:
        raise self._nothing("resume", app, env)

    def retry(self, app: str, env: str, *, actor: str, source: str) -> object:
        raise self._nothing("retry", app, env)

    def rollback(self, app: str, env: str, *, to: int | None, actor: str, source: str) -> object:
        state = self._store.get_environment(app, env)
        target = to if to is not None else state.previous_release_id
        if target is None:
            raise PromotionRefused(
                f"cannot roll back {app} in {env}: nothing ran there before release "
                f"{state.stable_release_id}; name a release with --to",
                refusal="conflict",
            )
        if target == state.stable_release_id:
            raise PromotionRefused(
                f"cannot roll back {app} in {env}: release {target} already runs there",
                refusal="conflict",
            )
        with self._store.transaction() as tx:
            after = tx.set_stable_release(app, env, target, pinned=True)
            tx.append_event(
                actor,
                "rollout.rolled_back",
                source=source,
                app=app,
                env=env,
                # the event belongs to the release that was undone: its history ends here
                release_id=state.stable_release_id or target,
                detail={
                    "from_release": state.stable_release_id,
                    "to_release": target,
                    "message": f"rolled back to release {target} by {actor}",
                },
            )
        return after


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
