"""Numbered schema migrations in the style of simonw/llm: plain functions, applied once each, in order.

Append-only: never edit or reorder a migration that has shipped; add ``m00N_...`` instead. Each runs in
its own ``BEGIN IMMEDIATE`` transaction together with its ``_migrations`` row, so a crash mid-way leaves
the schema at the previous step. Use ``db.execute`` one statement at a time, never ``executescript``
(it commits first, which would split the migration from its record).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from .records import DB_PATH_ENV, refuse

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = []
"""Every migration this code knows, in the order they apply."""


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration; its function name is the name recorded in ``_migrations``."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    """Plans, runs, the latest result per task, and a log of the usage of every attempt."""
    db.execute(
        """
        CREATE TABLE plans (
            plan_id TEXT PRIMARY KEY,
            task TEXT NOT NULL,
            created_at TEXT NOT NULL,
            json TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            plan_id TEXT NOT NULL REFERENCES plans(plan_id),
            status TEXT NOT NULL,
            pid INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            finished_at TEXT,
            options_json TEXT NOT NULL,
            estimate_json TEXT,
            report_json TEXT
        )"""
    )
    db.execute("CREATE INDEX runs_by_created_at ON runs(created_at)")
    db.execute("CREATE INDEX runs_by_status ON runs(status)")
    db.execute(
        """
        CREATE TABLE task_results (
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            task_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            status TEXT NOT NULL,
            json TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            PRIMARY KEY (run_id, task_id)
        )"""
    )
    db.execute(
        """
        CREATE TABLE usage_log (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            task_id TEXT NOT NULL,
            model TEXT,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX usage_log_by_run ON usage_log(run_id, task_id)")


@migration
def m002_syntheses(db: sqlite3.Connection) -> None:
    """Every synthesis of a run (its answer, or null for a failed one) with what it cost, newest last."""
    db.execute(
        """
        CREATE TABLE syntheses (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            json TEXT,
            spend_json TEXT NOT NULL,
            at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX syntheses_by_run ON syntheses(run_id)")


@migration
def m003_planning_log(db: sqlite3.Connection) -> None:
    """Every planner call's spend, a failed one's too: plans are made before any run exists to bill."""
    db.execute(
        """
        CREATE TABLE planning_log (
            id INTEGER PRIMARY KEY,
            plan_id TEXT,
            run_id TEXT,
            model TEXT,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            error TEXT,
            at TEXT NOT NULL
        )"""
    )


@migration
def m004_server_tool_uses(db: sqlite3.Connection) -> None:
    """Server-tool requests per call (web searches are billed per use), so stored totals keep them."""
    for column in ("web_search_requests", "web_fetch_requests"):
        db.execute(f"ALTER TABLE usage_log ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


@migration
def m005_leases(db: sqlite3.Connection) -> None:
    """Run ownership by server, not pid: the owner's id, its lease (renewed by heartbeat), a cancel request."""
    for column in ("owner", "lease_until", "cancel_requested_at"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")


@migration
def m006_batches(db: sqlite3.Connection) -> None:
    """Message Batches a run sent and which request of which subtask each carries, so a restart re-attaches."""
    db.execute(
        """
        CREATE TABLE batches (
            batch_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            ended_at TEXT
        )"""
    )
    db.execute("CREATE INDEX batches_by_run ON batches(run_id)")
    db.execute(
        """
        CREATE TABLE batch_requests (
            batch_id TEXT NOT NULL REFERENCES batches(batch_id) ON DELETE CASCADE,
            custom_id TEXT NOT NULL,
            task_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            consumed_at TEXT,
            PRIMARY KEY (batch_id, custom_id)
        )"""
    )
    db.execute("CREATE INDEX batch_requests_by_digest ON batch_requests(digest)")


def applied_migrations(db: sqlite3.Connection) -> list[str]:
    """Names recorded in ``_migrations``, oldest first; empty for a blank database."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone() is None:
        return []
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def check_known(db: sqlite3.Connection) -> None:
    """Refuse a database that a newer version of this code has migrated past what we know.

    Raises:
        StoreError: ``_migrations`` names a migration this code does not have.
    """
    known = {fn.__name__ for fn in MIGRATIONS}
    unknown = [name for name in applied_migrations(db) if name not in known]
    if unknown:
        raise refuse(
            database_file(db),
            f"was written by a newer version of subagent-mcp (unknown migrations: {', '.join(unknown)})",
            f"Upgrade subagent-mcp, or set {DB_PATH_ENV} to another file.",
        )


def migrate(db: sqlite3.Connection, upto: int | None = None) -> list[str]:
    """Apply every registered migration not yet recorded, each in its own transaction; return their names.

    ``upto`` stops after that many migrations (tests build a database at an earlier version with it).

    ``db`` must be in autocommit mode (``isolation_level=None``). Safe to call again, also from another
    process at the same time: each step re-checks ``_migrations`` inside its write transaction.

    Raises:
        StoreError: the database holds a migration this code does not know (see ``check_known``).
    """
    if db.isolation_level is not None:
        raise ValueError("migrate() needs a connection opened with isolation_level=None")
    check_known(db)
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    applied: list[str] = []
    for fn in MIGRATIONS[:upto]:
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchone() is None:
                fn(db)
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (fn.__name__, datetime.now(UTC).isoformat()),
                )
                applied.append(fn.__name__)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return applied


def database_file(db: sqlite3.Connection) -> str:
    """The file behind ``db``'s main schema, or ``:memory:``."""
    row = db.execute("SELECT file FROM pragma_database_list WHERE name = 'main'").fetchone()
    return row[0] if row and row[0] else ":memory:"
