"""SQLite specifics: WAL mode, foreign keys, busy timeout, readers beside a writer."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import FixedClock, Store, StoreError, default_url

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(default_url(tmp_path), clock=FixedClock())
    try:
        yield opened
    finally:
        opened.close()


def test_the_database_file_is_in_wal_mode(sqlite_store: Store, tmp_path: Path) -> None:
    sqlite_store.upsert_app("web", "https://git.example/web.git", "main")
    # A separate, plain connection reads the mode from the file itself.
    raw = sqlite3.connect(tmp_path / "berth.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()
    assert (tmp_path / "berth.db-wal").exists()


def test_store_connections_enforce_foreign_keys_and_wait_when_busy(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_readers_do_not_wait_for_an_open_write_transaction(sqlite_store: Store) -> None:
    sqlite_store.upsert_app("web", "https://git.example/web.git", "main")
    seen: list[list[str]] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            seen.append([app.name for app in sqlite_store.list_apps()])
        except BaseException as exc:
            errors.append(exc)

    with sqlite_store.transaction() as tx:
        tx.upsert_app("api", "https://git.example/api.git", "main")
        # The write lock is held until the block ends; a reader must still get through,
        # and see only what was committed.
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=20)
        assert not reader.is_alive(), "a reader waited for the writer"
    assert errors == []
    assert seen == [["web"]]
    assert [app.name for app in sqlite_store.list_apps()] == ["api", "web"]


def test_a_missing_data_directory_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    with pytest.raises(StoreError, match="does not exist") as caught:
        Store.open(default_url(missing))
    assert str(missing) in str(caught.value)
    assert not missing.exists()


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    (tmp_path / "berth.db").write_bytes(b"this is not an SQLite database, not even close" * 50)
    with pytest.raises(StoreError, match=r"berth\.db: file is not a database"):
        Store.open(default_url(tmp_path))
