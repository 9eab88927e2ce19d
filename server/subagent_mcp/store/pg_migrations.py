"""The PostgreSQL equivalents of ``migrations.py``: the same numbered steps by name, in one place.

Append-only, in step with the SQLite list (a test checks the names match). Each step runs in its own
transaction with its ``schema_version`` row, all under one advisory lock, so two servers starting
together on an empty database apply each step exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .records import DB_URL_ENV, StoreError

if TYPE_CHECKING:
    import asyncpg

LOCK_KEY = 0x5_AB_A6_E7_7C_0D_E5
"""The advisory lock held while migrating (one per database: PostgreSQL scopes these keys to it)."""

PG_MIGRATIONS: list[tuple[str, tuple[str, ...]]] = [
    (
        "m001_initial",
        (
            "CREATE TABLE plans (plan_id TEXT PRIMARY KEY, task TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,"
            " json TEXT NOT NULL)",
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL REFERENCES plans(plan_id),"
            " status TEXT NOT NULL, pid BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL,"
            " updated_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ, options_json TEXT NOT NULL,"
            " estimate_json TEXT, report_json TEXT)",
            "CREATE INDEX runs_by_created_at ON runs(created_at)",
            "CREATE INDEX runs_by_status ON runs(status)",
            # ord keeps "the order first saved" (SQLite's rowid); an upsert keeps its row, so its ord too
            "CREATE TABLE task_results (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
            " task_id TEXT NOT NULL, seq BIGINT NOT NULL, status TEXT NOT NULL, json TEXT NOT NULL,"
            " finished_at TIMESTAMPTZ NOT NULL, ord BIGINT GENERATED ALWAYS AS IDENTITY,"
            " PRIMARY KEY (run_id, task_id))",
            "CREATE TABLE usage_log (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, task_id TEXT NOT NULL, model TEXT,"
            " input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, cache_read_tokens BIGINT NOT NULL,"
            " cache_write_tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, at TIMESTAMPTZ NOT NULL)",
            "CREATE INDEX usage_log_by_run ON usage_log(run_id, task_id)",
        ),
    ),
    (
        "m002_syntheses",
        (
            "CREATE TABLE syntheses (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, json TEXT, spend_json TEXT NOT NULL,"
            " at TIMESTAMPTZ NOT NULL)",
            "CREATE INDEX syntheses_by_run ON syntheses(run_id)",
        ),
    ),
    (
        "m003_planning_log",
        (
            "CREATE TABLE planning_log (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, plan_id TEXT, run_id TEXT,"
            " model TEXT, input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,"
            " cache_read_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL,"
            " cost_usd DOUBLE PRECISION NOT NULL, error TEXT, at TIMESTAMPTZ NOT NULL)",
        ),
    ),
    (
        "m004_server_tool_uses",
        (
            "ALTER TABLE usage_log ADD COLUMN web_search_requests BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE usage_log ADD COLUMN web_fetch_requests BIGINT NOT NULL DEFAULT 0",
        ),
    ),
    (
        "m005_leases",
        (
            "ALTER TABLE runs ADD COLUMN owner TEXT",
            "ALTER TABLE runs ADD COLUMN lease_until TIMESTAMPTZ",
            "ALTER TABLE runs ADD COLUMN cancel_requested_at TIMESTAMPTZ",
        ),
    ),
    (
        "m006_batches",
        (
            # ord keeps the order batches were sent (SQLite's rowid)
            "CREATE TABLE batches (batch_id TEXT PRIMARY KEY,"
            " run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, status TEXT NOT NULL,"
            " created_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ, ord BIGINT GENERATED ALWAYS AS IDENTITY)",
            "CREATE INDEX batches_by_run ON batches(run_id)",
            "CREATE TABLE batch_requests (batch_id TEXT NOT NULL REFERENCES batches(batch_id) ON DELETE CASCADE,"
            " custom_id TEXT NOT NULL, task_id TEXT NOT NULL, digest TEXT NOT NULL, consumed_at TIMESTAMPTZ,"
            " PRIMARY KEY (batch_id, custom_id))",
            "CREATE INDEX batch_requests_by_digest ON batch_requests(digest)",
        ),
    ),
]


async def applied_migrations(conn: asyncpg.Connection) -> list[str]:
    """Names recorded in ``schema_version``, oldest first; empty for a blank database."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return []
    return [r[0] for r in await conn.fetch("SELECT name FROM schema_version ORDER BY name")]


async def migrate(conn: asyncpg.Connection, shown: str, upto: int | None = None) -> list[str]:
    """Apply every step not yet recorded, each in its own transaction, under the advisory lock; return their names.

    ``upto`` stops after that many steps (tests build a database at an earlier version with it).

    Raises:
        StoreError: the database holds another program's tables, or a step this code does not know.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await _check(conn, shown)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        done = set(await applied_migrations(conn))
        applied: list[str] = []
        for name, statements in PG_MIGRATIONS[:upto]:
            if name in done:
                continue
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (name, applied_at) VALUES ($1, $2)", name, datetime.now(UTC)
                )
            applied.append(name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _check(conn: asyncpg.Connection, shown: str) -> None:
    """Refuse a database whose schema is another program's, or one a newer version of this code migrated."""
    tables = [
        r[0]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1"
        )
    ]
    if tables and "schema_version" not in tables:
        raise StoreError(
            f"The run database at {shown} holds another program's tables ({', '.join(tables[:5])}). "
            f"Point {DB_URL_ENV} at a database (or a schema, via search_path) of its own.",
            shown,
        )
    known = {name for name, _ in PG_MIGRATIONS}
    unknown = [name for name in await applied_migrations(conn) if name not in known]
    if unknown:
        raise StoreError(
            f"The run database at {shown} was written by a newer version of subagent-mcp (unknown migrations: "
            f"{', '.join(unknown)}). Upgrade subagent-mcp, or set {DB_URL_ENV} to another database.",
            shown,
        )
