"""Pure rules of the store: database URLs, build state transitions, the migration list."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.store import BUILD_TRANSITIONS, BuildState, MigrationError, StoreError, default_url
from pipeline.store.database import normalize_url
from pipeline.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, check_sequence

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://berth@db.example:5432/berth", "postgresql+psycopg"),
        ("postgres://berth@db.example/berth", "postgresql+psycopg"),
        ("postgresql+psycopg://berth@db.example/berth", "postgresql+psycopg"),
        ("sqlite:///var/lib/berth/berth.db", "sqlite+pysqlite"),
    ],
)
def test_urls_get_berths_driver(url: str, driver: str) -> None:
    parsed = normalize_url(url)
    assert parsed.drivername == driver
    assert parsed.database in ("berth", "var/lib/berth/berth.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/berth", "unsupported database URL"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
        ("postgresql+asyncpg://u@h/db", "psycopg 3"),
        ("not a url", "invalid database URL"),
    ],
)
def test_unusable_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        normalize_url(url)


def test_passwords_never_appear_in_url_errors() -> None:
    with pytest.raises(StoreError) as caught:
        normalize_url("mysql://root:hunter2@localhost/berth")
    assert "hunter2" not in str(caught.value)


def test_default_url_is_berth_db_in_the_data_dir(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path}/berth.db"


def test_build_transitions_cover_every_state_and_only_succeeded_is_final() -> None:
    assert set(BUILD_TRANSITIONS) == set(BuildState)
    finals = {state for state, targets in BUILD_TRANSITIONS.items() if not targets}
    assert finals == {BuildState.SUCCEEDED}
    for state, targets in BUILD_TRANSITIONS.items():
        assert state not in targets, f"{state} may not move to itself"
    # every state but queued can be reached from queued
    reached, frontier = {BuildState.QUEUED}, [BuildState.QUEUED]
    while frontier:
        for target in BUILD_TRANSITIONS[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(BuildState)
    assert [s for s in BuildState if s.finished] == [
        BuildState.SUCCEEDED,
        BuildState.FAILED,
        BuildState.SKIPPED,
        BuildState.CANCELLED,
        BuildState.INTERRUPTED,
    ]


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    assert LATEST_VERSION >= 2
    assert all(m.description for m in MIGRATIONS)


def test_a_misnumbered_migration_list_is_refused() -> None:
    def noop(_conn: object) -> None:
        return None

    broken = [Migration(1, "one", noop), Migration(3, "three", noop)]
    with pytest.raises(MigrationError, match="position 2 holds version 3"):
        check_sequence(broken)
