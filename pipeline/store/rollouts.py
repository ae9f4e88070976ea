"""Rollouts: one environment moving from its stable release to a new one, step by step.

The rollout engine owns the meaning of ``phase`` and of the ``state`` blob; the store
keeps them with a ``version`` counter. Every update names the version it read and fails
with :class:`ConflictError` when someone else wrote in between (compare-and-set), so two
control planes can never both act on the same observation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError

from pipeline.store.base import (
    Operations,
    check_json_object,
    check_limit,
    check_name,
    require_app,
    require_release,
)
from pipeline.store.errors import ConflictError, InvalidInputError, NotFoundError
from pipeline.store.schema import rollouts

_PHASE_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class Rollout:
    """One rollout of ``to_release_id`` into ``env``; ``active`` until it is finished."""

    id: int
    app: str
    env: str
    from_release_id: int | None
    to_release_id: int
    phase: str
    step_index: int
    weight: int
    state: Mapping[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def active(self) -> bool:
        return self.finished_at is None


def _rollout(row: Row[Any]) -> Rollout:
    return Rollout(
        id=int(row.id),
        app=row.app,
        env=row.env,
        from_release_id=None if row.from_release_id is None else int(row.from_release_id),
        to_release_id=int(row.to_release_id),
        phase=row.phase,
        step_index=int(row.step_index),
        weight=int(row.weight),
        state=row.state,
        version=int(row.version),
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def _check_phase(phase: str) -> str:
    if not isinstance(phase, str) or not _PHASE_RE.fullmatch(phase):
        raise InvalidInputError(
            f"invalid rollout phase {phase!r}: 1-40 lowercase letters, digits, '_' or '-', "
            "starting with a letter"
        )
    return phase


def _check_weight(weight: int) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise InvalidInputError(f"rollout weight must be an integer from 0 to 100 (got {weight!r})")
    return weight


def _check_step(step_index: int) -> int:
    if isinstance(step_index, bool) or not isinstance(step_index, int) or step_index < 0:
        raise InvalidInputError(f"rollout step index must be 0 or more (got {step_index!r})")
    return step_index


class RolloutOperations(Operations):
    """Create, advance (compare-and-set) and read rollouts."""

    def create_rollout(
        self,
        app: str,
        env: str,
        to_release_id: int,
        *,
        phase: str,
        from_release_id: int | None = None,
        step_index: int = 0,
        weight: int = 0,
        state: Mapping[str, Any] | None = None,
    ) -> Rollout:
        """Start a rollout of ``to_release_id`` into ``env`` at version 1.

        :class:`ConflictError` when ``env`` already has an unfinished rollout: finish or
        abort that one first.
        """
        check_name("environment", env)
        _check_phase(phase)
        _check_weight(weight)
        _check_step(step_index)
        document = check_json_object("rollout state", state or {})
        now = self._now()
        with self._tx() as conn:
            require_app(conn, app)
            require_release(conn, to_release_id, app=app)
            if from_release_id is not None:
                require_release(conn, from_release_id, app=app)
            active = conn.execute(
                select(rollouts.c.id).where(
                    rollouts.c.app == app, rollouts.c.env == env, rollouts.c.finished_at.is_(None)
                )
            ).first()
            if active is not None:
                raise ConflictError(_busy(app, env, int(active.id)))
            try:
                # A savepoint, so a lost race leaves the caller's transaction usable.
                with conn.begin_nested():
                    new_id = conn.execute(
                        rollouts.insert()
                        .values(
                            app=app,
                            env=env,
                            from_release_id=from_release_id,
                            to_release_id=to_release_id,
                            phase=phase,
                            step_index=step_index,
                            weight=weight,
                            state=document,
                            version=1,
                            created_at=now,
                            updated_at=now,
                            finished_at=None,
                        )
                        .returning(rollouts.c.id)
                    ).scalar_one()
            except IntegrityError as exc:
                # Another control plane started one between our check and our insert;
                # the partial unique index uq_rollouts_active caught it.
                raise ConflictError(_busy(app, env, None)) from exc
            row = conn.execute(select(rollouts).where(rollouts.c.id == new_id)).one()
        return _rollout(row)

    def update_rollout(
        self,
        rollout_id: int,
        *,
        expected_version: int,
        phase: str | None = None,
        step_index: int | None = None,
        weight: int | None = None,
        state: Mapping[str, Any] | None = None,
        finished: bool = False,
    ) -> Rollout:
        """Write the given fields if the rollout is still at ``expected_version``; the
        version goes up by one. ``finished=True`` ends the rollout (no more updates).

        :class:`ConflictError` when someone else updated it since it was read: reload it
        and decide again."""
        values: dict[str, Any] = {}
        if phase is not None:
            values["phase"] = _check_phase(phase)
        if step_index is not None:
            values["step_index"] = _check_step(step_index)
        if weight is not None:
            values["weight"] = _check_weight(weight)
        if state is not None:
            values["state"] = check_json_object("rollout state", state)
        now = self._now()
        values["updated_at"] = now
        if finished:
            values["finished_at"] = now
        with self._tx() as conn:
            result = conn.execute(
                update(rollouts)
                .where(
                    rollouts.c.id == rollout_id,
                    rollouts.c.version == expected_version,
                    rollouts.c.finished_at.is_(None),
                )
                .values(version=rollouts.c.version + 1, **values)
            )
            row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
            if row is None:
                raise NotFoundError(f"unknown rollout {rollout_id}: no such rollout")
            if result.rowcount != 1:
                current = _rollout(row)
                if not current.active:
                    raise ConflictError(
                        f"rollout {rollout_id} of {current.app}/{current.env} finished at "
                        f"{current.finished_at.isoformat() if current.finished_at else '?'} "
                        f"(phase {current.phase}); start a new rollout instead"
                    )
                raise ConflictError(
                    f"rollout {rollout_id} of {current.app}/{current.env} was changed by "
                    f"someone else: it is at version {current.version}, this update expected "
                    f"{expected_version}; reload it and decide again"
                )
        return _rollout(row)

    def get_rollout(self, rollout_id: int) -> Rollout:
        """Rollout ``rollout_id``; :class:`NotFoundError` when there is none."""
        with self._tx(write=False) as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
        if row is None:
            raise NotFoundError(f"unknown rollout {rollout_id}: no such rollout")
        return _rollout(row)

    def get_current_rollout(self, app: str, env: str) -> Rollout | None:
        """The latest rollout of ``env`` of ``app`` (active or finished), if any."""
        check_name("environment", env)
        with self._tx(write=False) as conn:
            require_app(conn, app)
            row = conn.execute(
                select(rollouts)
                .where(rollouts.c.app == app, rollouts.c.env == env)
                .order_by(rollouts.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else _rollout(row)

    def list_rollouts(
        self, app: str, env: str | None = None, *, limit: int = 100, before_id: int | None = None
    ) -> list[Rollout]:
        """Rollouts of ``app`` (in ``env``), newest first."""
        check_limit(limit)
        query = (
            select(rollouts)
            .where(rollouts.c.app == app)
            .order_by(rollouts.c.id.desc())
            .limit(limit)
        )
        if env is not None:
            query = query.where(rollouts.c.env == check_name("environment", env))
        if before_id is not None:
            query = query.where(rollouts.c.id < before_id)
        with self._tx(write=False) as conn:
            require_app(conn, app)
            return [_rollout(row) for row in conn.execute(query)]

    def list_active_rollouts(self) -> list[Rollout]:
        """Every unfinished rollout, oldest first: what the engine reconciles."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(rollouts).where(rollouts.c.finished_at.is_(None)).order_by(rollouts.c.id)
            )
            return [_rollout(row) for row in rows]


def _busy(app: str, env: str, active_id: int | None) -> str:
    which = f"rollout {active_id}" if active_id is not None else "another rollout"
    return (
        f"environment {env} of app {app!r} already has an unfinished rollout ({which}); "
        "let it finish or abort it before starting another"
    )
