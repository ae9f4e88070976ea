"""The state store: every table behind one typed API.

:class:`Store` runs each call in its own transaction. ``with store.transaction() as tx``
gives a :class:`StoreTransaction` with the same methods, all committed together (or none
of them), e.g. a new stable release and the event that records it::

    with store.transaction() as tx:
        tx.set_stable_release("web", "prod", release.id, pinned=True)
        tx.append_event("alice", "rollback", source=cli_source("alice"), app="web", env="prod")

Database errors are translated once, here: a unique-constraint collision becomes
:class:`ConflictError`, anything else :class:`StoreError` naming the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from pipeline.errors import StoreError
from pipeline.store.approvals import ApprovalOperations
from pipeline.store.apps import AppOperations
from pipeline.store.builds import BuildOperations
from pipeline.store.clock import Clock, SystemClock
from pipeline.store.database import SQLITE_BEGIN, create_store_engine, first_line
from pipeline.store.deliveries import DeliveryOperations
from pipeline.store.environments import EnvironmentOperations
from pipeline.store.errors import ConflictError
from pipeline.store.events import EventOperations
from pipeline.store.hosts import HostOperations
from pipeline.store.migrations import migrate, require_current
from pipeline.store.releases import ReleaseOperations
from pipeline.store.rollouts import RolloutOperations


class _AllOperations(
    AppOperations,
    BuildOperations,
    ReleaseOperations,
    EnvironmentOperations,
    RolloutOperations,
    ApprovalOperations,
    HostOperations,
    DeliveryOperations,
    EventOperations,
):
    """Every store operation; subclasses decide where transactions come from."""


class Store(_AllOperations):
    """berth's persistent state on SQLite or PostgreSQL; safe to share between threads.

    Open it with :meth:`open`; close it (or use it as a context manager) to release its
    connections.
    """

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()

    @classmethod
    def open(cls, url: str, *, clock: Clock | None = None, migrate_schema: bool = True) -> Store:
        """Connect to ``url`` and bring its schema up to date (or, with
        ``migrate_schema=False``, only check that it is).

        Raises :class:`MigrationError` when the database was written by a newer berth.
        """
        engine = create_store_engine(url)
        try:
            _probe(engine)
            if migrate_schema:
                migrate(engine, clock=clock)
            else:
                require_current(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for health checks and tests; queries belong in here)."""
        return self._engine

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """Several operations in one transaction: committed when the block ends, rolled
        back if it raises."""
        with self._translate(), self._engine.connect() as conn, conn.begin():
            yield StoreTransaction(conn, self._clock)

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _tx(self, *, write: bool = True) -> AbstractContextManager[Connection]:
        return self._begin(write)

    @contextmanager
    def _begin(self, write: bool) -> Iterator[Connection]:
        with self._translate(), self._engine.connect() as conn:
            # SQLite: reads take no write lock, so they never wait for a writer (WAL).
            conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE" if write else "DEFERRED"})
            with conn.begin():
                yield conn

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError as exc:
            raise ConflictError(
                f"the state store refused a change that collides with existing data: "
                f"{first_line(exc)}"
            ) from exc
        except SQLAlchemyError as exc:
            where = self._engine.url.render_as_string(hide_password=True)
            raise StoreError(f"state store {where}: {first_line(exc)}") from exc


class StoreTransaction(_AllOperations):
    """The store's operations inside one open transaction (see :meth:`Store.transaction`)."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self._conn = conn
        self._clock = clock

    @contextmanager
    def _shared(self) -> Iterator[Connection]:
        yield self._conn

    def _tx(self, *, write: bool = True) -> AbstractContextManager[Connection]:
        return self._shared()


def _probe(engine: Engine) -> None:
    """Connect once, so an unreachable database is reported as such (not as a migration
    failure)."""
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreError(
            f"cannot connect to the state store at {where}: {first_line(exc)}; check that the "
            "database server runs and that the database URL is right"
        ) from exc
