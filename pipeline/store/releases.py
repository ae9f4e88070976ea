"""Releases: (app, commit, image digest, app-spec snapshot), recorded once and never rebuilt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select

from pipeline.store.base import (
    Operations,
    check_commit,
    check_digest,
    check_json_object,
    check_limit,
    check_name,
    check_text,
    require_app,
)
from pipeline.store.database import insert_ignoring_conflict
from pipeline.store.errors import ConflictError, NotFoundError
from pipeline.store.schema import releases


@dataclass(frozen=True)
class Release:
    """What gets promoted: one commit's image and the app spec it was built with."""

    id: int
    app: str
    commit: str
    digest: str
    spec: Mapping[str, Any]
    author: str
    message: str
    created_at: datetime


def _release(row: Row[Any]) -> Release:
    return Release(
        id=int(row.id),
        app=row.app,
        commit=row.commit,
        digest=row.digest,
        spec=row.spec,
        author=row.author,
        message=row.message,
        created_at=row.created_at,
    )


class ReleaseOperations(Operations):
    """Record and read releases."""

    def create_release(
        self,
        app: str,
        commit: str,
        digest: str,
        spec: Mapping[str, Any],
        *,
        author: str = "",
        message: str = "",
    ) -> tuple[Release, bool]:
        """Record the release of ``commit``; return it and whether it is new.

        Recording the same commit and digest again returns the existing release. The same
        commit with another digest is a :class:`ConflictError`: builds are deterministic,
        so a different image means something is wrong and must not silently replace it.
        """
        check_commit(commit)
        digest = check_digest(digest)
        document = check_json_object("release spec", spec)
        check_text("author", author, allow_empty=True)
        check_text("message", message, limit=100_000, allow_empty=True)
        now = self._now()
        with self._tx() as conn:
            require_app(conn, app)
            created = insert_ignoring_conflict(
                conn,
                releases,
                {
                    "app": app,
                    "commit": commit,
                    "digest": digest,
                    "spec": document,
                    "author": author,
                    "message": message,
                    "created_at": now,
                },
                ["app", "commit"],
            )
            row = conn.execute(
                select(releases).where(releases.c.app == app, releases.c.commit == commit)
            ).one()
        release = _release(row)
        if release.digest != digest:
            raise ConflictError(
                f"commit {commit[:12]} of app {app!r} was already released as {release.digest} "
                f"(release {release.id}); refusing to record it again as {digest}. Builds "
                "should be reproducible: compare the two images."
            )
        return release, created

    def get_release(self, release_id: int) -> Release:
        """Release ``release_id``; :class:`NotFoundError` when there is none."""
        with self._tx(write=False) as conn:
            row = conn.execute(select(releases).where(releases.c.id == release_id)).first()
        if row is None:
            raise NotFoundError(f"unknown release {release_id}: no such release in the state store")
        return _release(row)

    def find_release(self, app: str, commit: str) -> Release | None:
        """The release of ``commit`` of ``app``, if there is one."""
        check_name("app", app)
        check_commit(commit)
        with self._tx(write=False) as conn:
            row = conn.execute(
                select(releases).where(releases.c.app == app, releases.c.commit == commit)
            ).first()
        return None if row is None else _release(row)

    def list_releases(
        self, app: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[Release]:
        """Releases of ``app``, newest first; ``before_id`` pages further back."""
        check_limit(limit)
        query = (
            select(releases)
            .where(releases.c.app == app)
            .order_by(releases.c.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            query = query.where(releases.c.id < before_id)
        with self._tx(write=False) as conn:
            require_app(conn, app)
            rows = conn.execute(query).all()
        return [_release(row) for row in rows]
