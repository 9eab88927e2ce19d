"""PostgreSQL schema migrations, from both ends: a blank database and one at each earlier version; and the
PostgreSQL store's refusals (no driver, another program's tables, a newer schema, a wrong password never shown)."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest
from pydantic import SecretStr

from subagent_mcp.cli import database_problem
from subagent_mcp.errors import ConfigError
from subagent_mcp.settings import Settings
from subagent_mcp.store import Store, StoreError
from subagent_mcp.store.migrations import MIGRATIONS
from subagent_mcp.store.migrations import migrate as migrate_sqlite
from subagent_mcp.store.pg_migrations import PG_MIGRATIONS, applied_migrations, migrate

pytestmark = pytest.mark.anyio

NAMES = [name for name, _ in PG_MIGRATIONS]


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_url)
    try:
        yield connection
    finally:
        await connection.close()


async def columns(conn: asyncpg.Connection, table: str) -> list[tuple[str, str, bool]]:
    rows = await conn.fetch(
        "SELECT column_name, data_type, is_nullable = 'NO' FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1"
    )
    return [r[0] for r in rows]


def test_the_postgresql_steps_are_the_sqlite_steps_by_name_in_order() -> None:
    assert [fn.__name__ for fn in MIGRATIONS] == NAMES


@pytest.mark.postgres
async def test_a_blank_database_gets_every_step_and_the_same_columns_as_sqlite(conn: asyncpg.Connection) -> None:
    assert await migrate(conn, "db") == NAMES

    assert await tables(conn) == [
        "batch_requests", "batches", "planning_log", "plans", "runs", "schema_version", "syntheses", "task_results",
        "usage_log",
    ]  # fmt: skip
    assert await columns(conn, "runs") == [
        ("run_id", "text", True),
        ("plan_id", "text", True),
        ("status", "text", True),
        ("pid", "bigint", True),
        ("created_at", "timestamp with time zone", True),
        ("updated_at", "timestamp with time zone", True),
        ("finished_at", "timestamp with time zone", False),
        ("options_json", "text", True),
        ("estimate_json", "text", False),
        ("report_json", "text", False),
        ("owner", "text", False),
        ("lease_until", "timestamp with time zone", False),
        ("cancel_requested_at", "timestamp with time zone", False),
    ]
    lite = sqlite3.connect(":memory:", isolation_level=None)
    migrate_sqlite(lite)
    for table in (
        "plans",
        "runs",
        "task_results",
        "usage_log",
        "syntheses",
        "planning_log",
        "batches",
        "batch_requests",
    ):
        in_sqlite = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
        in_postgres = [c[0] for c in await columns(conn, table) if c[0] != "ord"]  # ord: SQLite's rowid
        assert in_postgres == in_sqlite, table
    lite.close()


@pytest.mark.postgres
@pytest.mark.parametrize("version", range(1, len(PG_MIGRATIONS)))
async def test_a_database_at_each_earlier_version_migrates_to_the_current_one_keeping_its_rows(
    conn: asyncpg.Connection, version: int
) -> None:
    assert await migrate(conn, "db", upto=version) == NAMES[:version]
    await conn.execute("INSERT INTO plans VALUES ('p', 't', now(), '{}')")
    await conn.execute(
        "INSERT INTO runs (run_id, plan_id, status, pid, created_at, updated_at, options_json)"
        " VALUES ('r', 'p', 'running', 1, now(), now(), '{}')"
    )

    assert await migrate(conn, "db") == NAMES[version:]
    kept = await conn.fetch("SELECT run_id, status, owner, lease_until FROM runs")
    assert [tuple(r) for r in kept] == [("r", "running", None, None)]
    assert await applied_migrations(conn) == NAMES


@pytest.mark.postgres
async def test_migrating_again_changes_nothing(conn: asyncpg.Connection) -> None:
    await migrate(conn, "db")
    before = {t: await columns(conn, t) for t in await tables(conn)}

    assert await migrate(conn, "db") == []
    assert {t: await columns(conn, t) for t in await tables(conn)} == before


@pytest.mark.postgres
async def test_two_servers_starting_together_on_a_blank_database_apply_each_step_once(pg_url: str) -> None:
    opened: list[str] = []

    async def start(owner: str) -> None:
        async with Store.open(pg_url, owner=owner) as store:
            opened.append(store.owner)

    async with anyio.create_task_group() as tg:
        for owner in ("server-a", "server-b", "server-c"):
            tg.start_soon(start, owner)

    assert sorted(opened) == ["server-a", "server-b", "server-c"]
    conn = await asyncpg.connect(pg_url)
    try:
        assert [r[0] for r in await conn.fetch("SELECT name FROM schema_version ORDER BY name")] == NAMES
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_database_from_a_newer_version_is_refused_and_left_alone(pg_url: str, conn: asyncpg.Connection) -> None:
    await migrate(conn, "db")
    await conn.execute("INSERT INTO schema_version VALUES ('m999_from_the_future', now())")

    with pytest.raises(StoreError, match=r"newer version of subagent-mcp \(unknown migrations: m999_from_the_future\)"):
        async with Store.open(pg_url):
            pass
    assert len(await applied_migrations(conn)) == len(NAMES) + 1


@pytest.mark.postgres
async def test_a_database_of_another_program_is_refused_by_name(pg_url: str, conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TABLE invoices (id INT)")

    with pytest.raises(StoreError, match=r"holds another program's tables \(invoices\)"):
        async with Store.open(pg_url):
            pass
    assert await tables(conn) == ["invoices"]


async def test_an_unreachable_server_is_named_without_its_password() -> None:
    url = "postgresql://alice:correct-horse-battery@127.0.0.1:1/runs"

    with pytest.raises(StoreError) as caught:
        async with Store.open(url):
            pass

    message = str(caught.value)
    assert "correct-horse-battery" not in message
    assert "postgresql://alice:***@127.0.0.1:1/runs could not be reached" in message
    assert "SUBAGENT_MCP_DB_URL" in message


async def test_without_the_driver_the_error_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if asyncpg were not installed

    with pytest.raises(StoreError, match=r'pip install "subagent-mcp\[scale\]"'):
        async with Store.open("postgresql://bob:hunter2-hunter2@127.0.0.1/runs"):
            pass


def test_serve_names_an_unreachable_database_in_one_line_without_its_password() -> None:
    url = "postgresql://alice:correct-horse-battery@127.0.0.1:1/runs"
    problem = database_problem(Settings(db_url=SecretStr(url)))

    assert problem is not None
    assert "correct-horse-battery" not in problem
    assert "postgresql://alice:***@127.0.0.1:1/runs could not be reached" in problem


def test_a_database_url_that_is_not_postgresql_is_refused_by_name_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SUBAGENT_MCP_DB_URL": "mysql://root:Sekrit-Pass-99@db/runs"}, env_file=None)

    assert "SUBAGENT_MCP_DB_URL: Value error, must be a postgresql://" in str(caught.value)
    assert "Sekrit-Pass-99" not in str(caught.value)
