"""Schema migrations on SQLite and PostgreSQL: v1 → latest keeps every row, the migrated
schema matches ``schema.py``, newer databases are refused, failed steps change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, UniqueConstraint, func, inspect, select, text

from pipeline.store import LATEST_VERSION, FixedClock, MigrationError, Store
from pipeline.store.database import create_store_engine
from pipeline.store.migrations import MIGRATIONS, Migration, current_version, migrate
from pipeline.store.migrations import v001_initial as v1
from pipeline.store.schema import metadata, schema_version
from tests.store.samples import commit, digest

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    created = create_store_engine(database_url)
    try:
        yield created
    finally:
        created.dispose()


def _version(engine: Engine) -> int:
    with engine.connect() as conn:
        return current_version(conn)


def _fill_version_1(conn: Connection) -> dict[str, int]:
    """One or more rows in every table of the version-1 schema; returns the row counts."""
    at = [T0 + timedelta(minutes=i) for i in range(10)]
    conn.execute(
        v1.apps.insert(),
        [
            {"name": "web", "repo": "https://git.example/web.git", "branch": "main",
             "created_at": at[0], "updated_at": at[1]},
            {"name": "api", "repo": "https://git.example/api.git", "branch": "trunk",
             "created_at": at[0], "updated_at": at[0]},
        ],
    )  # fmt: skip
    conn.execute(
        v1.builds.insert(),
        [
            {"id": 1, "app": "web", "commit": commit(1), "state": "succeeded", "reason": "",
             "digest": digest(1), "worker": "w1", "created_at": at[1], "started_at": at[2],
             "finished_at": at[3], "updated_at": at[3]},
            {"id": 2, "app": "web", "commit": commit(2), "state": "queued", "reason": "",
             "digest": None, "worker": None, "created_at": at[4], "started_at": None,
             "finished_at": None, "updated_at": at[4]},
        ],
    )  # fmt: skip
    conn.execute(
        v1.releases.insert(),
        [
            {"id": 1, "app": "web", "commit": commit(1), "digest": digest(1),
             "spec": {"run": {"port": 8080}, "env": ["dev", "prod"]}, "created_at": at[3]},
            {"id": 2, "app": "api", "commit": commit(3), "digest": digest(3),
             "spec": {}, "created_at": at[4]},
        ],
    )  # fmt: skip
    conn.execute(
        v1.environments.insert(),
        [
            {"app": "web", "env": "dev", "stable_release_id": 1, "previous_release_id": None,
             "pinned": False, "lock_holder": None, "lock_reason": None, "locked_at": None,
             "updated_at": at[5]},
            {"app": "web", "env": "prod", "stable_release_id": 1, "previous_release_id": None,
             "pinned": True, "lock_holder": "alice", "lock_reason": "freeze", "locked_at": at[6],
             "updated_at": at[6]},
            {"app": "api", "env": "dev", "stable_release_id": 2, "previous_release_id": None,
             "pinned": False, "lock_holder": "bob", "lock_reason": None, "locked_at": None,
             "updated_at": at[7]},
        ],
    )  # fmt: skip
    conn.execute(
        v1.rollouts.insert(),
        [
            {"id": 1, "app": "web", "env": "dev", "from_release_id": None, "to_release_id": 1,
             "phase": "succeeded", "step_index": 3, "weight": 100, "state": {"steps": 3},
             "version": 7, "created_at": at[5], "updated_at": at[6], "finished_at": at[6]},
            {"id": 2, "app": "web", "env": "prod", "from_release_id": 1, "to_release_id": 1,
             "phase": "paused", "step_index": 1, "weight": 10, "state": {"hosts": ["h1"]},
             "version": 2, "created_at": at[7], "updated_at": at[8], "finished_at": None},
        ],
    )  # fmt: skip
    conn.execute(
        v1.approvals.insert(),
        [
            {"id": 1, "release_id": 1, "env": "prod", "approver": "carol", "comment": "ok",
             "created_at": at[7], "lapsed_at": None},
            {"id": 2, "release_id": 1, "env": "prod", "approver": "dave", "comment": "",
             "created_at": at[7], "lapsed_at": at[8]},
        ],
    )  # fmt: skip
    conn.execute(
        v1.hosts.insert(),
        [{"name": "h1", "address": "10.88.0.2:7070", "labels": {"zone": "a"},
          "last_heartbeat": at[9], "created_at": at[0], "updated_at": at[0]}],
    )  # fmt: skip
    conn.execute(
        v1.deliveries.insert(),
        [{"provider": "github", "delivery_id": "d-1", "received_at": at[1]}],
    )
    conn.execute(
        v1.events.insert(),
        [
            {"id": 1, "at": at[3], "actor": "berth", "action": "release.created",
             "source": "system:build", "app": "web", "env": None, "release_id": 1,
             "detail": {"digest": digest(1)}},
            {"id": 2, "at": at[6], "actor": "alice", "action": "environment.locked",
             "source": "cli:alice", "app": "web", "env": "prod", "release_id": None,
             "detail": {}},
        ],
    )  # fmt: skip
    if conn.dialect.name == "postgresql":
        # Explicit ids leave PostgreSQL's sequences behind; a real v1 berth never did that.
        for table in ("builds", "releases", "rollouts", "approvals", "events"):
            conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                     f"(SELECT max(id) FROM {table}))")
            )  # fmt: skip
    return {
        "apps": 2, "builds": 2, "releases": 2, "environments": 3, "rollouts": 2,
        "approvals": 2, "hosts": 1, "deliveries": 1, "events": 2,
    }  # fmt: skip


def test_migrating_version_1_to_latest_keeps_every_row(engine: Engine, database_url: str) -> None:
    assert migrate(engine, target=1) == [1]
    with engine.begin() as conn:
        counts = _fill_version_1(conn)

    assert migrate(engine) == list(range(2, LATEST_VERSION + 1))
    assert _version(engine) == LATEST_VERSION
    with engine.connect() as conn:
        for table, count in counts.items():
            found = conn.execute(select(func.count()).select_from(metadata.tables[table]))
            assert found.scalar_one() == count, table
        assert (
            conn.execute(
                select(func.count()).select_from(metadata.tables["environment_locks"])
            ).scalar_one()
            == 2
        )

    store = Store.open(database_url, clock=FixedClock(), migrate_schema=False)
    try:
        web = store.get_app("web")
        assert (web.repo, web.branch, web.created_at, web.updated_at) == (
            "https://git.example/web.git", "main", T0, T0 + timedelta(minutes=1),
        )  # fmt: skip
        assert store.get_app("api").branch == "trunk"

        done, queued = store.get_build(1), store.get_build(2)
        assert (done.state, done.digest, done.worker) == ("succeeded", digest(1), "w1")
        assert done.finished_at == T0 + timedelta(minutes=3)
        assert (queued.state, queued.commit, queued.started_at) == ("queued", commit(2), None)

        release = store.get_release(1)
        assert release.spec == {"run": {"port": 8080}, "env": ["dev", "prod"]}
        assert (release.author, release.message) == ("", "")  # new in version 2
        assert store.get_release(2).app == "api"

        prod = store.get_environment("web", "prod")
        assert (prod.stable_release_id, prod.pinned) == (1, True)
        assert prod.lock is not None
        assert (prod.lock.holder, prod.lock.reason, prod.lock.since) == (
            "alice", "freeze", T0 + timedelta(minutes=6),
        )  # fmt: skip
        api_dev = store.get_environment("api", "dev")
        assert api_dev.lock is not None  # a lock without reason or time still moves over
        assert (api_dev.lock.holder, api_dev.lock.reason) == ("bob", "")
        assert api_dev.lock.since == T0 + timedelta(minutes=7)
        assert store.get_environment("web", "dev").lock is None

        finished, active = store.get_rollout(1), store.get_rollout(2)
        assert (finished.phase, finished.weight, finished.version, finished.active) == (
            "succeeded", 100, 7, False,
        )  # fmt: skip
        assert (active.state, active.from_release_id, active.active) == ({"hosts": ["h1"]}, 1, True)

        approvals = store.list_approvals(1, "prod", include_lapsed=True)
        assert [(a.approver, a.active) for a in approvals] == [("carol", True), ("dave", False)]

        host = store.get_host("h1")
        assert (host.address, host.labels, host.last_heartbeat) == (
            "10.88.0.2:7070", {"zone": "a"}, T0 + timedelta(minutes=9),
        )  # fmt: skip
        assert store.record_delivery("github", "d-1") is False

        events = store.list_events()
        assert [(e.id, e.action, e.detail) for e in events] == [
            (1, "release.created", {"digest": digest(1)}),
            (2, "environment.locked", {}),
        ]
        # New rows get fresh ids after the migrated ones.
        assert store.append_event("bob", "note", source="cli:bob").id == 3
        assert store.create_build("web", commit(9))[0].id == 3
    finally:
        store.close()


def test_a_migrated_database_matches_the_declared_schema(engine: Engine) -> None:
    migrate(engine)
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == set(metadata.tables)
    for name, table in metadata.tables.items():
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert list(columns) == [c.name for c in table.columns], name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, f"{name}.{column.name}"
        assert inspector.get_pk_constraint(name)["constrained_columns"] == [
            c.name for c in table.primary_key.columns
        ], name
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        declared_uniques = {
            tuple(c.name for c in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        }
        assert uniques == declared_uniques, name
        indexes = {
            i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(name)
            if not i.get("duplicates_constraint")
        }
        assert indexes == {
            i.name: (tuple(c.name for c in i.columns), bool(i.unique)) for i in table.indexes
        }, name
        foreign = {
            (tuple(f["constrained_columns"]), f["referred_table"])
            for f in inspector.get_foreign_keys(name)
        }
        declared_foreign = {((fk.parent.name,), fk.column.table.name) for fk in table.foreign_keys}
        assert foreign == declared_foreign, name


def test_migrating_again_changes_nothing(engine: Engine) -> None:
    assert migrate(engine) == list(range(1, LATEST_VERSION + 1))
    assert migrate(engine) == []
    with engine.connect() as conn:
        rows = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version))
        assert list(rows.scalars()) == list(range(1, LATEST_VERSION + 1))


def test_a_database_from_a_newer_berth_is_refused(engine: Engine, database_url: str) -> None:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            schema_version.insert().values(
                version=LATEST_VERSION + 1, description="from the future", applied_at=T0
            )
        )
    with pytest.raises(MigrationError, match="newer berth") as caught:
        Store.open(database_url)
    assert "Upgrade berth" in str(caught.value)
    assert f"version {LATEST_VERSION + 1}" in str(caught.value)
    with pytest.raises(MigrationError, match="newer berth"):
        Store.open(database_url, migrate_schema=False)
    assert _version(engine) == LATEST_VERSION + 1


def test_an_outdated_database_is_refused_without_migrating(
    engine: Engine, database_url: str
) -> None:
    migrate(engine, target=1)
    with pytest.raises(MigrationError, match="is at schema version 1"):
        Store.open(database_url, migrate_schema=False)
    assert _version(engine) == 1


def test_a_failing_step_leaves_the_previous_version_intact(engine: Engine) -> None:
    def half_done(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("INSERT INTO apps (name) VALUES ('no-repo')"))  # NOT NULL fails

    broken = (*MIGRATIONS, Migration(LATEST_VERSION + 1, "broken step", half_done))
    with pytest.raises(MigrationError) as caught:
        migrate(engine, migrations=broken)
    message = str(caught.value)
    assert f"version {LATEST_VERSION + 1} (broken step) failed" in message
    assert f"left at version {LATEST_VERSION}" in message
    assert _version(engine) == LATEST_VERSION
    assert not inspect(engine).has_table("half_done")


def test_a_target_beyond_the_known_migrations_is_refused(engine: Engine) -> None:
    with pytest.raises(MigrationError, match="known are 1"):
        migrate(engine, target=LATEST_VERSION + 1)
    assert _version(engine) == 0
