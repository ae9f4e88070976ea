"""Approvals: a person's consent to run a release in an environment.

One approval per (release, environment, approver). Approvals *lapse* (when a new
candidate arrives, or when the policy says they expire); a lapsed approval no longer
counts, and approving again renews it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update

from pipeline.store.base import (
    Operations,
    check_name,
    check_text,
    require_app,
    require_release,
)
from pipeline.store.database import insert_ignoring_conflict
from pipeline.store.schema import approvals, releases


@dataclass(frozen=True)
class Approval:
    """``approver`` approved release ``release_id`` for ``env``; lapsed if ``lapsed_at``."""

    id: int
    release_id: int
    env: str
    approver: str
    comment: str
    created_at: datetime
    lapsed_at: datetime | None

    @property
    def active(self) -> bool:
        return self.lapsed_at is None


def _approval(row: Row[Any]) -> Approval:
    return Approval(
        id=int(row.id),
        release_id=int(row.release_id),
        env=row.env,
        approver=row.approver,
        comment=row.comment,
        created_at=row.created_at,
        lapsed_at=row.lapsed_at,
    )


class ApprovalOperations(Operations):
    """Add, list and lapse approvals."""

    def add_approval(
        self, release_id: int, env: str, approver: str, *, comment: str = ""
    ) -> tuple[Approval, bool]:
        """Record that ``approver`` approves ``release_id`` for ``env``; return the approval
        and whether it now counts where it did not before (new, or renewed after lapsing).
        Approving twice is harmless: the second call changes nothing."""
        check_name("environment", env)
        check_text("approver", approver)
        check_text("comment", comment, limit=10_000, allow_empty=True)
        now = self._now()
        key = (
            approvals.c.release_id == release_id,
            approvals.c.env == env,
            approvals.c.approver == approver,
        )
        with self._tx() as conn:
            require_release(conn, release_id)
            added = insert_ignoring_conflict(
                conn,
                approvals,
                {
                    "release_id": release_id,
                    "env": env,
                    "approver": approver,
                    "comment": comment,
                    "created_at": now,
                    "lapsed_at": None,
                },
                ["release_id", "env", "approver"],
            )
            if not added:
                renewed = conn.execute(
                    update(approvals)
                    .where(*key, approvals.c.lapsed_at.is_not(None))
                    .values(comment=comment, created_at=now, lapsed_at=None)
                )
                added = renewed.rowcount == 1
            row = conn.execute(select(approvals).where(*key)).one()
        return _approval(row), added

    def list_approvals(
        self, release_id: int, env: str, *, include_lapsed: bool = False
    ) -> list[Approval]:
        """Approvals of ``release_id`` for ``env``, oldest first (active ones only unless
        ``include_lapsed``)."""
        check_name("environment", env)
        query = (
            select(approvals)
            .where(approvals.c.release_id == release_id, approvals.c.env == env)
            .order_by(approvals.c.id)
        )
        if not include_lapsed:
            query = query.where(approvals.c.lapsed_at.is_(None))
        with self._tx(write=False) as conn:
            require_release(conn, release_id)
            return [_approval(row) for row in conn.execute(query)]

    def lapse_approvals(self, app: str, env: str, *, release_id: int | None = None) -> int:
        """Lapse the active approvals for ``env`` of ``app`` (only those of ``release_id``
        when given); return how many lapsed."""
        check_name("environment", env)
        now = self._now()
        with self._tx() as conn:
            require_app(conn, app)
            of_app = select(releases.c.id).where(releases.c.app == app)
            if release_id is not None:
                require_release(conn, release_id, app=app)
                of_app = of_app.where(releases.c.id == release_id)
            result = conn.execute(
                update(approvals)
                .where(
                    approvals.c.env == env,
                    approvals.c.lapsed_at.is_(None),
                    approvals.c.release_id.in_(of_app),
                )
                .values(lapsed_at=now)
            )
            return int(result.rowcount)
