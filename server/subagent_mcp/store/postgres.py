"""The PostgreSQL store (asyncpg): the same records and methods as ``SqliteStore``, for several servers at once.

Each method is one transaction on a pooled connection, shielded from cancellation so a committed result is
never half-written; every message names the database by its URL without the password.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from ..contracts import Plan, RunReport, Spend, SubagentResult, Synthesis, Usage
from ..run_options import RunOptions
from .pg_batches import PostgresBatches
from .pg_leases import PostgresLeases
from .pg_migrations import migrate
from .records import DB_URL_ENV, RunRecord, RunSummary, StoreError
from .rows import effective_status, options_json, planning_cost, preview, run_record, scrub, shown_url, stored_plan

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")
POOL_SIZE = 8
TIMEOUT_S = 30.0
"""Connecting, waiting for a pooled connection, and each statement: a database that stops answering fails."""

INSTALL_HINT = 'pip install "subagent-mcp[scale]"'


def _driver() -> Any:
    """The asyncpg module, or a ``StoreError`` that says how to install it."""
    try:
        import asyncpg
    except ImportError:
        raise StoreError(
            f"{DB_URL_ENV} selects PostgreSQL, which needs the asyncpg driver: {INSTALL_HINT} "
            f"(or unset {DB_URL_ENV} to keep runs in SQLite)."
        ) from None
    return asyncpg


class PostgresStore(PostgresLeases, PostgresBatches):
    """Plans, runs and task results in PostgreSQL; each method is one transaction, committed on return."""

    def __init__(self, pool: asyncpg.Pool, url: str, *, owner: str, lease_s: float, now: Callable[[], datetime]):
        self._pool = pool
        self._url = url
        self._now = now
        self.path = shown_url(url)
        self.owner = owner
        self.lease_s = lease_s
        self._errors: tuple[type[BaseException], ...] = (
            _driver().PostgresError, _driver().InterfaceError, OSError, TimeoutError,
        )  # fmt: skip

    @classmethod
    async def open(cls, url: str, *, owner: str, lease_s: float, now: Callable[[], datetime]) -> PostgresStore:
        """Connect a pool to ``url`` and migrate the database (under an advisory lock).

        Raises:
            StoreError: no driver, the server cannot be reached or refuses us, or the schema is not ours.
        """
        driver, shown = _driver(), shown_url(url)
        try:
            pool = await driver.create_pool(
                url, min_size=1, max_size=POOL_SIZE, timeout=TIMEOUT_S, command_timeout=TIMEOUT_S
            )
        except Exception as exc:  # any failure to connect is the user's to fix, so say it plainly
            raise StoreError(
                f"The run database at {shown} could not be reached ({type(exc).__name__}: {scrub(str(exc), url)}). "
                f"Check that PostgreSQL runs there and that {DB_URL_ENV} names its host, port, user, password "
                "and database.",
                shown,
            ) from None
        try:
            async with pool.acquire(timeout=TIMEOUT_S) as conn:
                await migrate(conn, shown)
        except StoreError:
            await pool.close()
            raise
        except Exception as exc:
            await pool.close()
            raise StoreError(
                f"The run database at {shown} could not be prepared ({scrub(str(exc), url)}). "
                "The user needs the right to create tables in it.",
                shown,
            ) from None
        return cls(pool, url, owner=owner, lease_s=lease_s, now=now)

    async def close(self) -> None:
        await self._pool.close()

    async def _tx(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction, shielded (a cancelled caller still waits for its write to land)."""
        with anyio.CancelScope(shield=True):
            try:
                async with self._pool.acquire(timeout=TIMEOUT_S) as conn, conn.transaction():
                    return await fn(cast("asyncpg.Connection", conn))
            except self._errors as exc:
                message = scrub(str(exc), self._url) or type(exc).__name__
                problem = f"Could not {what} in the run database at {self.path}: {message}."
                raise StoreError(problem, self.path) from None
        raise AssertionError("unreachable: a shielded scope is never cancelled")

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_s)

    async def _touch_run(self, db: asyncpg.Connection, run_id: str, now: datetime) -> None:
        if _count(await db.execute("UPDATE runs SET updated_at = $1 WHERE run_id = $2", now, run_id)) == 0:
            raise StoreError(f"No run {run_id!r} is stored in {self.path}.", self.path)

    async def save_plan(self, plan: Plan) -> None:
        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO plans (plan_id, task, created_at, json) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (plan_id) DO NOTHING",
                plan.plan_id, plan.task, self._now(), plan.model_dump_json(),
            )  # fmt: skip
            stored: Any = await db.fetchval("SELECT json FROM plans WHERE plan_id = $1", plan.plan_id)
            if stored_plan(plan.plan_id, stored, self.path) != plan:
                raise StoreError(
                    f"A different plan with id {plan.plan_id!r} is already stored; saved plans never change, "
                    "so give the changed plan a new plan_id.",
                    self.path,
                )

        await self._tx(f"save plan {plan.plan_id}", go)

    async def get_plan(self, plan_id: str) -> Plan | None:
        async def go(db: asyncpg.Connection) -> str | None:
            return await db.fetchval("SELECT json FROM plans WHERE plan_id = $1", plan_id)

        stored = await self._tx(f"read plan {plan_id}", go)
        return None if stored is None else stored_plan(plan_id, stored, self.path)

    async def create_run(self, run_id: str, plan_id: str, options: RunOptions) -> None:
        async def go(db: asyncpg.Connection) -> None:
            if await db.fetchval("SELECT 1 FROM plans WHERE plan_id = $1", plan_id) is None:
                raise StoreError(f"No plan {plan_id!r} is stored in {self.path}; save the plan first.", self.path)
            now = self._now()
            await db.execute(
                "INSERT INTO runs (run_id, plan_id, status, pid, created_at, updated_at, options_json, owner,"
                " lease_until) VALUES ($1, $2, 'running', $3, $4, $4, $5, $6, $7)",
                run_id, plan_id, os.getpid(), now, options_json(options), self.owner, self._lease(now),
            )  # fmt: skip

        await self._tx(f"create run {run_id}", go)

    async def save_result(self, run_id: str, result: SubagentResult, *, record_usage: bool = True) -> None:
        async def go(db: asyncpg.Connection) -> None:
            now = self._now()
            await self._touch_run(db, run_id, now)
            await db.execute(
                "INSERT INTO task_results (run_id, task_id, seq, status, json, finished_at)"
                " VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (run_id, task_id) DO UPDATE SET"
                " seq = task_results.seq + 1, status = excluded.status, json = excluded.json,"
                " finished_at = excluded.finished_at",
                run_id, result.task_id, result.status, result.model_dump_json(), now,
            )  # fmt: skip
            if record_usage and (result.usage.total_tokens or result.cost_usd):
                await _insert_usage(db, run_id, result.task_id, result.model, result.usage, result.cost_usd, now)

        await self._tx(f"save the result of task {result.task_id} of run {run_id}", go)

    async def log_usage(self, run_id: str, task_id: str, model: str | None, usage: Usage, cost_usd: float) -> None:
        async def go(db: asyncpg.Connection) -> None:
            now = self._now()
            await self._touch_run(db, run_id, now)
            await _insert_usage(db, run_id, task_id, model, usage, cost_usd, now)

        await self._tx(f"log usage of task {task_id} of run {run_id}", go)

    async def finish_run(self, run_id: str, report: RunReport) -> None:
        if report.run_id != run_id:
            raise ValueError(f"report is for run {report.run_id!r}, not {run_id!r}")

        async def go(db: asyncpg.Connection) -> None:
            now = self._now()
            await self._touch_run(db, run_id, now)
            done = await db.execute(
                "UPDATE runs SET status = $1, report_json = $2, finished_at = $3, cancel_requested_at = NULL"
                " WHERE run_id = $4 AND (owner = $5 OR owner IS NULL)",
                report.status, report.model_dump_json(), now, run_id, self.owner,
            )  # fmt: skip
            if _count(done) == 0:
                raise StoreError(f"Run {run_id!r} was taken over by another server; its ending is not ours.", self.path)

        await self._tx(f"finish run {run_id}", go)

    async def save_synthesis(self, run_id: str, synthesis: Synthesis | None, spend: Spend) -> None:
        async def go(db: asyncpg.Connection) -> None:
            now = self._now()
            await self._touch_run(db, run_id, now)
            await db.execute(
                "INSERT INTO syntheses (run_id, json, spend_json, at) VALUES ($1, $2, $3, $4)",
                run_id, None if synthesis is None else synthesis.model_dump_json(), spend.model_dump_json(), now,
            )  # fmt: skip

        await self._tx(f"save the synthesis of run {run_id}", go)

    async def log_planning(
        self, plan_id: str | None, run_id: str | None, model: str | None, spend: Spend, error: str | None
    ) -> None:
        u = spend.usage

        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO planning_log (plan_id, run_id, model, input_tokens, output_tokens, cache_read_tokens,"
                " cache_write_tokens, cost_usd, error, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                plan_id, run_id, model, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
                spend.cost_usd, error, self._now(),
            )  # fmt: skip

        await self._tx("log the planner's usage", go)

    async def failed_planning(self) -> Spend:
        async def go(db: asyncpg.Connection) -> Any:
            return await db.fetchrow(
                "SELECT COALESCE(SUM(input_tokens), 0)::bigint, COALESCE(SUM(output_tokens), 0)::bigint,"
                " COALESCE(SUM(cost_usd), 0.0) FROM planning_log WHERE plan_id IS NULL"
            )

        row = await self._tx("read the planner's usage", go)
        return Spend(usage=Usage(input_tokens=row[0], output_tokens=row[1]), cost_usd=row[2])

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._tx(f"read run {run_id}", lambda db: self._read_run(db, run_id))

    async def _read_run(self, db: asyncpg.Connection, run_id: str) -> RunRecord | None:
        row = await db.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
        if row is None:
            return None
        now = self._now()
        rows = await db.fetch("SELECT task_id, json FROM task_results WHERE run_id = $1 ORDER BY ord", run_id)
        results = {r["task_id"]: SubagentResult.model_validate_json(r["json"]) for r in rows}
        totals = await db.fetchrow(
            "SELECT COALESCE(SUM(input_tokens), 0)::bigint, COALESCE(SUM(output_tokens), 0)::bigint,"
            " COALESCE(SUM(cache_read_tokens), 0)::bigint, COALESCE(SUM(cache_write_tokens), 0)::bigint,"
            " COALESCE(SUM(cost_usd), 0.0), COALESCE(SUM(web_search_requests), 0)::bigint,"
            " COALESCE(SUM(web_fetch_requests), 0)::bigint FROM usage_log WHERE run_id = $1",
            run_id,
        )
        assert totals is not None
        syntheses = await db.fetch("SELECT json, spend_json, at FROM syntheses WHERE run_id = $1 ORDER BY id", run_id)
        return run_record(row, row["lease_until"], now, results, totals, syntheses)

    async def list_runs(self, limit: int = 20) -> list[RunSummary]:
        async def go(db: asyncpg.Connection) -> tuple[list[Any], list[Any]]:
            rows = await db.fetch(
                "SELECT r.run_id, r.plan_id, p.task, r.status, r.created_at, r.finished_at, r.options_json,"
                " r.lease_until, r.owner,"
                " (SELECT COALESCE(SUM(u.cost_usd), 0.0) FROM usage_log u WHERE u.run_id = r.run_id) AS cost_usd,"
                " (SELECT COALESCE(SUM((s.spend_json::jsonb ->> 'cost_usd')::double precision), 0.0)"
                " FROM syntheses s WHERE s.run_id = r.run_id) AS synthesis_cost_usd"
                " FROM runs r JOIN plans p ON p.plan_id = r.plan_id ORDER BY r.created_at DESC, r.run_id DESC"
                " LIMIT $1",
                limit,
            )
            counts = await db.fetch(
                "SELECT run_id, status, COUNT(*) FROM task_results WHERE run_id = ANY($1::text[])"
                " GROUP BY run_id, status",
                [r["run_id"] for r in rows],
            )
            return rows, counts

        now = self._now()
        rows, count_rows = await self._tx("list runs", go)
        counts: dict[str, dict[str, int]] = {r["run_id"]: {} for r in rows}
        for c in count_rows:
            counts[c[0]][c[1]] = c[2]
        return [
            RunSummary.model_validate(
                {
                    **dict(r),
                    "status": effective_status(r["status"], r["lease_until"], r["owner"], now),
                    "task": preview(r["task"]),
                    "counts": counts[r["run_id"]],
                    "total_cost_usd": round(
                        r["cost_usd"] + r["synthesis_cost_usd"] + planning_cost(r["options_json"]), 8
                    ),
                }
            )
            for r in rows
        ]


async def _insert_usage(
    db: asyncpg.Connection, run_id: str, task_id: str, model: str | None, usage: Usage, cost_usd: float, at: datetime
) -> None:
    await db.execute(
        "INSERT INTO usage_log (run_id, task_id, model, input_tokens, output_tokens, cache_read_tokens,"
        " cache_write_tokens, cost_usd, at, web_search_requests, web_fetch_requests)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        run_id, task_id, model, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
        usage.cache_write_tokens, cost_usd, at, usage.web_search_requests, usage.web_fetch_requests,
    )  # fmt: skip


def _count(status: str) -> int:
    """Rows an UPDATE touched, from asyncpg's command tag (``"UPDATE 1"``)."""
    return int(status.rsplit(" ", 1)[-1])
