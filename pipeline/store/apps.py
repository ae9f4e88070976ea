"""Apps: the watched repositories, keyed by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select

from pipeline.store.base import Operations, check_name, check_text
from pipeline.store.database import upsert
from pipeline.store.errors import NotFoundError
from pipeline.store.schema import TEXT, apps


@dataclass(frozen=True)
class App:
    """One watched git repository and branch that builds one image."""

    name: str
    repo: str
    branch: str
    created_at: datetime
    updated_at: datetime


def _app(row: Row[Any]) -> App:
    return App(
        name=row.name,
        repo=row.repo,
        branch=row.branch,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class AppOperations(Operations):
    """Register and read apps."""

    def upsert_app(self, name: str, repo: str, branch: str) -> App:
        """Register ``name`` or update its repository and branch; return the stored app."""
        check_name("app", name)
        check_text("repo", repo, limit=2000)
        check_text("branch", branch, limit=TEXT)
        now = self._now()
        with self._tx() as conn:
            upsert(
                conn,
                apps,
                {
                    "name": name,
                    "repo": repo,
                    "branch": branch,
                    "created_at": now,
                    "updated_at": now,
                },
                ["name"],
                {"repo": repo, "branch": branch, "updated_at": now},
            )
            row = conn.execute(select(apps).where(apps.c.name == name)).one()
        return _app(row)

    def get_app(self, name: str) -> App:
        """The app called ``name``; :class:`NotFoundError` when there is none."""
        check_name("app", name)
        with self._tx(write=False) as conn:
            row = conn.execute(select(apps).where(apps.c.name == name)).first()
        if row is None:
            raise NotFoundError(
                f"unknown app {name!r}: it is not in the state store; add it to the service "
                "config (apps:) so berth registers it"
            )
        return _app(row)

    def list_apps(self) -> list[App]:
        """Every app, by name."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(apps).order_by(apps.c.name)).all()
        return [_app(row) for row in rows]
