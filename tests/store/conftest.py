"""Store fixtures: every store test runs once on SQLite and once on a real PostgreSQL.

The PostgreSQL server is started once per session (``tests/helpers/postgres.py``).
``database_url`` is an empty database of the test's own (migration tests need one);
``store`` is a store at the latest schema, on PostgreSQL in a database migrated once per
test module and emptied before every test (truncating is far quicker than creating and
migrating a database each time).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import FixedClock, Store, default_url
from tests.helpers.postgres import PostgresServer, PostgresUnavailable, start_postgres

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def migrated_postgres(postgres_server: PostgresServer) -> Iterator[str]:
    """The name of a PostgreSQL database at the latest schema, for one test module."""
    name = postgres_server.create_database("store")
    Store.open(postgres_server.url(name)).close()
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file in ``tmp_path``, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield default_url(tmp_path)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, clock: FixedClock
) -> Iterator[Store]:
    """An empty store at the latest schema on ``backend``, with a :class:`FixedClock`."""
    if backend == "sqlite":
        url = default_url(tmp_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name: str = request.getfixturevalue("migrated_postgres")
        server.truncate_tables(name, keep=("schema_version",))
        url = server.url(name)
    opened = Store.open(url, clock=clock)
    try:
        yield opened
    finally:
        opened.close()
