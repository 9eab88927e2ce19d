"""Schema migrations, specified from a blank database: exact schema, idempotence, refusal of newer schemas."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from subagent_mcp.store import SqliteStore, StoreError, migrations
from subagent_mcp.store.migrations import MIGRATIONS, applied_migrations, migrate


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    yield conn
    conn.close()


def columns(db: sqlite3.Connection, table: str) -> list[tuple[str, str, bool, int]]:
    """(name, type, not null, position in primary key) for each column, in order."""
    return [(r[1], r[2], bool(r[3]), r[5]) for r in db.execute(f"PRAGMA table_info({table})")]


def foreign_keys(db: sqlite3.Connection, table: str) -> list[tuple[str, str, str, str]]:
    """(from column, to table, to column, on delete) for each foreign key."""
    return [(r[3], r[2], r[4], r[6]) for r in db.execute(f"PRAGMA foreign_key_list({table})")]


def schema(db: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in db.execute("SELECT name, sql FROM sqlite_master ORDER BY name")]


def test_migrations_are_uniquely_numbered_in_order() -> None:
    names = [fn.__name__ for fn in MIGRATIONS]
    assert all(re.fullmatch(r"m\d{3}_[a-z0-9_]+", n) for n in names)
    assert names == sorted(set(names))
    assert names[0] == "m001_initial"


def test_blank_database_gets_exactly_the_current_schema(db: sqlite3.Connection) -> None:
    assert migrate(db) == [
        "m001_initial", "m002_syntheses", "m003_planning_log", "m004_server_tool_uses", "m005_leases",
        "m006_batches",
    ]  # fmt: skip

    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    assert tables == [
        "_migrations", "batch_requests", "batches", "planning_log", "plans", "runs", "syntheses", "task_results",
        "usage_log",
    ]  # fmt: skip
    assert columns(db, "_migrations") == [("name", "TEXT", False, 1), ("applied_at", "TEXT", True, 0)]
    assert columns(db, "plans") == [
        ("plan_id", "TEXT", False, 1),
        ("task", "TEXT", True, 0),
        ("created_at", "TEXT", True, 0),
        ("json", "TEXT", True, 0),
    ]
    assert columns(db, "runs") == [
        ("run_id", "TEXT", False, 1),
        ("plan_id", "TEXT", True, 0),
        ("status", "TEXT", True, 0),
        ("pid", "INTEGER", True, 0),
        ("created_at", "TEXT", True, 0),
        ("updated_at", "TEXT", True, 0),
        ("finished_at", "TEXT", False, 0),
        ("options_json", "TEXT", True, 0),
        ("estimate_json", "TEXT", False, 0),
        ("report_json", "TEXT", False, 0),
        ("owner", "TEXT", False, 0),
        ("lease_until", "TEXT", False, 0),
        ("cancel_requested_at", "TEXT", False, 0),
    ]
    assert columns(db, "task_results") == [
        ("run_id", "TEXT", True, 1),
        ("task_id", "TEXT", True, 2),
        ("seq", "INTEGER", True, 0),
        ("status", "TEXT", True, 0),
        ("json", "TEXT", True, 0),
        ("finished_at", "TEXT", True, 0),
    ]
    assert columns(db, "usage_log") == [
        ("id", "INTEGER", False, 1),
        ("run_id", "TEXT", True, 0),
        ("task_id", "TEXT", True, 0),
        ("model", "TEXT", False, 0),
        ("input_tokens", "INTEGER", True, 0),
        ("output_tokens", "INTEGER", True, 0),
        ("cache_read_tokens", "INTEGER", True, 0),
        ("cache_write_tokens", "INTEGER", True, 0),
        ("cost_usd", "REAL", True, 0),
        ("at", "TEXT", True, 0),
        ("web_search_requests", "INTEGER", True, 0),
        ("web_fetch_requests", "INTEGER", True, 0),
    ]
    assert columns(db, "syntheses") == [
        ("id", "INTEGER", False, 1),
        ("run_id", "TEXT", True, 0),
        ("json", "TEXT", False, 0),
        ("spend_json", "TEXT", True, 0),
        ("at", "TEXT", True, 0),
    ]
    assert [c[0] for c in columns(db, "planning_log")] == [
        "id", "plan_id", "run_id", "model", "input_tokens", "output_tokens", "cache_read_tokens",
        "cache_write_tokens", "cost_usd", "error", "at",
    ]  # fmt: skip
    assert columns(db, "batches") == [
        ("batch_id", "TEXT", False, 1),
        ("run_id", "TEXT", True, 0),
        ("status", "TEXT", True, 0),
        ("created_at", "TEXT", True, 0),
        ("ended_at", "TEXT", False, 0),
    ]
    assert columns(db, "batch_requests") == [
        ("batch_id", "TEXT", True, 1),
        ("custom_id", "TEXT", True, 2),
        ("task_id", "TEXT", True, 0),
        ("digest", "TEXT", True, 0),
        ("consumed_at", "TEXT", False, 0),
    ]
    assert foreign_keys(db, "batches") == [("run_id", "runs", "run_id", "CASCADE")]
    assert foreign_keys(db, "batch_requests") == [("batch_id", "batches", "batch_id", "CASCADE")]
    assert foreign_keys(db, "runs") == [("plan_id", "plans", "plan_id", "NO ACTION")]
    assert foreign_keys(db, "syntheses") == [("run_id", "runs", "run_id", "CASCADE")]
    assert foreign_keys(db, "task_results") == [("run_id", "runs", "run_id", "CASCADE")]
    assert foreign_keys(db, "usage_log") == [("run_id", "runs", "run_id", "CASCADE")]
    indexes = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")]
    assert sorted(indexes) == [
        "batch_requests_by_digest", "batches_by_run", "runs_by_created_at", "runs_by_status", "syntheses_by_run",
        "usage_log_by_run",
    ]  # fmt: skip


def test_a_database_at_the_first_schema_gains_the_syntheses_table_and_keeps_its_runs(db: sqlite3.Connection) -> None:
    migrations.m001_initial(db)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    db.execute("INSERT INTO _migrations VALUES ('m001_initial', 'then')")
    db.execute("INSERT INTO plans VALUES ('p', 't', 'then', '{}')")
    db.execute("INSERT INTO runs (run_id, plan_id, status, pid, created_at, updated_at, options_json)"
               " VALUES ('r', 'p', 'succeeded', 1, 'then', 'then', '{}')")  # fmt: skip

    assert migrate(db) == [
        "m002_syntheses", "m003_planning_log", "m004_server_tool_uses", "m005_leases", "m006_batches",
    ]  # fmt: skip
    assert db.execute("SELECT run_id FROM runs").fetchall() == [("r",)]
    assert db.execute("SELECT COUNT(*) FROM syntheses").fetchone() == (0,)


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_a_database_at_each_earlier_version_migrates_to_the_current_one_keeping_its_rows(
    db: sqlite3.Connection, version: int
) -> None:
    assert migrate(db, upto=version) == [fn.__name__ for fn in MIGRATIONS[:version]]
    db.execute("INSERT INTO plans VALUES ('p', 't', 'then', '{}')")
    db.execute("INSERT INTO runs (run_id, plan_id, status, pid, created_at, updated_at, options_json)"
               " VALUES ('r', 'p', 'running', 1, 'then', 'then', '{}')")  # fmt: skip

    assert migrate(db) == [fn.__name__ for fn in MIGRATIONS[version:]]
    assert db.execute("SELECT run_id, status, owner, lease_until FROM runs").fetchall() == [
        ("r", "running", None, None)
    ]
    assert applied_migrations(db) == [fn.__name__ for fn in MIGRATIONS]


def test_migrating_again_changes_nothing(db: sqlite3.Connection) -> None:
    migrate(db)
    before = schema(db)

    assert migrate(db) == []
    assert schema(db) == before
    assert applied_migrations(db) == [fn.__name__ for fn in MIGRATIONS]


def test_a_failing_migration_leaves_no_trace(db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    def m999_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x TEXT)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, m999_broken])

    with pytest.raises(RuntimeError, match="boom"):
        migrate(db)

    assert applied_migrations(db) == [fn.__name__ for fn in MIGRATIONS]  # the earlier ones committed on their own
    assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchone() is None


def test_migrate_refuses_a_connection_that_is_not_in_autocommit_mode() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        with pytest.raises(ValueError, match="isolation_level=None"):
            migrate(conn)
    finally:
        conn.close()


def test_a_database_from_a_newer_version_is_refused(db: sqlite3.Connection) -> None:
    migrate(db)
    db.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', 'later')")

    with pytest.raises(StoreError, match=r"newer version of subagent-mcp \(unknown migrations: m999_from_the_future\)"):
        migrate(db)


def test_a_newer_database_file_is_refused_by_name_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SqliteStore.open(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', 'later')")
    raw.close()
    before = path.read_bytes()

    with pytest.raises(StoreError) as caught:
        SqliteStore.open(path)

    message = str(caught.value)
    assert str(path) in message
    assert "m999_from_the_future" in message
    assert "Upgrade subagent-mcp, or set SUBAGENT_MCP_DB_PATH" in message
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["runs.db"]


def test_a_database_at_the_fifth_schema_gains_the_batch_tables_and_keeps_its_runs(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for fn in MIGRATIONS[:5]:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'then')", (fn.__name__,))
    db.execute("INSERT INTO plans VALUES ('p', 't', 'then', '{}')")
    db.execute("INSERT INTO runs (run_id, plan_id, status, pid, created_at, updated_at, options_json)"
               " VALUES ('r', 'p', 'interrupted', 1, 'then', 'then', '{}')")  # fmt: skip

    assert migrate(db) == ["m006_batches"]
    assert db.execute("SELECT run_id, status FROM runs").fetchall() == [("r", "interrupted")]
    db.execute("INSERT INTO batches (batch_id, run_id, status, created_at) VALUES ('b1', 'r', 'in_progress', 'now')")
    db.execute("INSERT INTO batch_requests (batch_id, custom_id, task_id, digest) VALUES ('b1', 'r0', 'a', 'd')")
    db.execute("DELETE FROM runs WHERE run_id = 'r'")  # a run's batches go with it
    assert db.execute("SELECT COUNT(*) FROM batch_requests").fetchone() == (0,)
