"""The synchronous store: plain ``sqlite3``, one connection, one transaction per state change.

Every write commits before its method returns, so a crash loses at most the tasks still in flight.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

from ..contracts import Plan, RunReport, Spend, SubagentResult, Synthesis, Usage
from ..run_options import RunOptions
from .batches import BatchRecords
from .paths import MEMORY, connect
from .records import RunRecord, RunSummary, StoreError
from .rows import (
    LEASE_S,
    effective_status,
    new_owner_id,
    options_json,
    planning_cost,
    preview,
    run_record,
    stored_plan,
)
from .sqlite_leases import SqliteLeases


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqliteStore(SqliteLeases, BatchRecords):
    """Plans, runs and task results in one SQLite file; each method is one transaction, committed on return.

    Thread-safe (an internal lock serialises calls), so the async ``Store`` can run it in worker threads.
    Runs it creates or resumes are ``owner``'s, held for ``lease_s`` past each heartbeat.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        now: Callable[[], datetime] = _utcnow,
        owner: str | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        self._conn = conn
        self._now = now
        self._lock = threading.Lock()
        self.path = _database_file(conn)
        self.owner = owner or new_owner_id()
        self.lease_s = lease_s

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        now: Callable[[], datetime] = _utcnow,
        owner: str | None = None,
        lease_s: float = LEASE_S,
    ) -> SqliteStore:
        """Open (creating if missing) and migrate the database at ``path``; see ``connect`` for what is refused."""
        return cls(connect(path), now=now, owner=owner, lease_s=lease_s)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    @contextmanager
    def _tx(self, what: str, *, write: bool = True) -> Generator[sqlite3.Connection]:
        """One transaction: ``BEGIN IMMEDIATE`` for writes (no lock upgrade deadlocks), committed on success."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.ProgrammingError:
                raise
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"Could not {what} in the run database at {self.path}: {exc}.", self.path) from exc

    def _stamp(self) -> str:
        return self._now().astimezone(UTC).isoformat()

    def _lease(self, now: datetime) -> str:
        return (now + timedelta(seconds=self.lease_s)).astimezone(UTC).isoformat()

    def _touch_run(self, db: sqlite3.Connection, run_id: str, stamp: str) -> None:
        if db.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (stamp, run_id)).rowcount == 0:
            raise StoreError(f"No run {run_id!r} is stored in {self.path}.", self.path)

    def save_plan(self, plan: Plan) -> None:
        """Store ``plan``; saving the same plan again is a no-op.

        Raises:
            StoreError: a different plan with this ``plan_id`` is stored (plans are immutable: runs point at them).
        """
        with self._tx(f"save plan {plan.plan_id}") as db:
            row = db.execute("SELECT json FROM plans WHERE plan_id = ?", (plan.plan_id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO plans (plan_id, task, created_at, json) VALUES (?, ?, ?, ?)",
                    (plan.plan_id, plan.task, self._stamp(), plan.model_dump_json()),
                )
            elif stored_plan(plan.plan_id, row["json"], self.path) != plan:
                raise StoreError(
                    f"A different plan with id {plan.plan_id!r} is already stored; saved plans never change, "
                    "so give the changed plan a new plan_id.",
                    self.path,
                )

    def get_plan(self, plan_id: str) -> Plan | None:
        with self._tx(f"read plan {plan_id}", write=False) as db:
            row = db.execute("SELECT json FROM plans WHERE plan_id = ?", (plan_id,)).fetchone()
        return None if row is None else stored_plan(plan_id, row["json"], self.path)

    def create_run(self, run_id: str, plan_id: str, options: RunOptions) -> None:
        """Record a new run of a saved plan as ``running``, owned (leased) by this store's owner."""
        now = self._now()
        stamp = now.astimezone(UTC).isoformat()
        with self._tx(f"create run {run_id}") as db:
            if db.execute("SELECT 1 FROM plans WHERE plan_id = ?", (plan_id,)).fetchone() is None:
                raise StoreError(f"No plan {plan_id!r} is stored in {self.path}; save the plan first.", self.path)
            db.execute(
                "INSERT INTO runs (run_id, plan_id, status, pid, created_at, updated_at, options_json, owner,"
                " lease_until) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (run_id, plan_id, os.getpid(), stamp, stamp, options_json(options), self.owner, self._lease(now)),
            )

    def save_result(self, run_id: str, result: SubagentResult, *, record_usage: bool = True) -> None:
        """Commit ``result`` as its task's latest and, in the same transaction, log its usage.

        Pass ``record_usage=False`` only if this result's usage was already sent to ``log_usage``.
        """
        stamp = self._stamp()
        with self._tx(f"save the result of task {result.task_id} of run {run_id}") as db:
            self._touch_run(db, run_id, stamp)
            db.execute(
                "INSERT INTO task_results (run_id, task_id, seq, status, json, finished_at) VALUES (?, ?, 1, ?, ?, ?)"
                " ON CONFLICT (run_id, task_id) DO UPDATE SET seq = seq + 1, status = excluded.status,"
                " json = excluded.json, finished_at = excluded.finished_at",
                (run_id, result.task_id, result.status, result.model_dump_json(), stamp),
            )
            if record_usage and (result.usage.total_tokens or result.cost_usd):
                _insert_usage(db, run_id, result.task_id, result.model, result.usage, result.cost_usd, stamp)

    def log_usage(self, run_id: str, task_id: str, model: str | None, usage: Usage, cost_usd: float) -> None:
        """Append usage that no saved result carries (planning, synthesis, an attempt cut short)."""
        stamp = self._stamp()
        with self._tx(f"log usage of task {task_id} of run {run_id}") as db:
            self._touch_run(db, run_id, stamp)
            _insert_usage(db, run_id, task_id, model, usage, cost_usd, stamp)

    def finish_run(self, run_id: str, report: RunReport) -> None:
        """Record how the run ended: its status becomes ``report.status`` and the report is kept.

        Raises:
            StoreError: no such run, or another server took it over (its own ending will be recorded).
        """
        if report.run_id != run_id:
            raise ValueError(f"report is for run {report.run_id!r}, not {run_id!r}")
        stamp = self._stamp()
        with self._tx(f"finish run {run_id}") as db:
            self._touch_run(db, run_id, stamp)
            done = db.execute(
                "UPDATE runs SET status = ?, report_json = ?, finished_at = ?, cancel_requested_at = NULL"
                " WHERE run_id = ? AND (owner = ? OR owner IS NULL)",
                (report.status, report.model_dump_json(), stamp, run_id, self.owner),
            )
            if done.rowcount == 0:
                raise StoreError(f"Run {run_id!r} was taken over by another server; its ending is not ours.", self.path)

    def save_synthesis(self, run_id: str, synthesis: Synthesis | None, spend: Spend) -> None:
        """Keep a synthesis of the run (``None`` for a failed one) and what it cost."""
        stamp = self._stamp()
        with self._tx(f"save the synthesis of run {run_id}") as db:
            self._touch_run(db, run_id, stamp)
            db.execute(
                "INSERT INTO syntheses (run_id, json, spend_json, at) VALUES (?, ?, ?, ?)",
                (run_id, None if synthesis is None else synthesis.model_dump_json(), spend.model_dump_json(), stamp),
            )

    def log_planning(
        self, plan_id: str | None, run_id: str | None, model: str | None, spend: Spend, error: str | None
    ) -> None:
        """Record what a planner call cost, with the plan it made or the error it ended in."""
        u = spend.usage
        with self._tx("log the planner's usage") as db:
            db.execute(
                "INSERT INTO planning_log (plan_id, run_id, model, input_tokens, output_tokens, cache_read_tokens,"
                " cache_write_tokens, cost_usd, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (plan_id, run_id, model, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
                 spend.cost_usd, error, self._stamp()),
            )  # fmt: skip

    def failed_planning(self) -> Spend:
        """What planner calls that made no plan cost, in all."""
        with self._tx("read the planner's usage", write=False) as db:
            row = db.execute(
                "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0.0)"
                " FROM planning_log WHERE plan_id IS NULL"
            ).fetchone()
        return Spend(usage=Usage(input_tokens=row[0], output_tokens=row[1]), cost_usd=row[2])

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._tx(f"read run {run_id}", write=False) as db:
            return self._read_run(db, run_id)

    def _read_run(self, db: sqlite3.Connection, run_id: str) -> RunRecord | None:
        row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        now = self._now()
        rows = db.execute("SELECT task_id, json FROM task_results WHERE run_id = ? ORDER BY rowid", (run_id,))
        results = {r["task_id"]: SubagentResult.model_validate_json(r["json"]) for r in rows}
        totals = db.execute(
            "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_read_tokens),"
            " 0), COALESCE(SUM(cache_write_tokens), 0), COALESCE(SUM(cost_usd), 0.0),"
            " COALESCE(SUM(web_search_requests), 0), COALESCE(SUM(web_fetch_requests), 0)"
            " FROM usage_log WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        syntheses = db.execute("SELECT json, spend_json, at FROM syntheses WHERE run_id = ? ORDER BY id", (run_id,))
        lease_until = None if row["lease_until"] is None else datetime.fromisoformat(row["lease_until"])
        return run_record(row, lease_until, now, results, totals, syntheses)

    def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """The ``limit`` newest runs, newest first, with result counts per status and cost so far."""
        now = self._now()
        with self._tx("list runs", write=False) as db:
            rows = db.execute(
                "SELECT r.run_id, r.plan_id, p.task, r.status, r.created_at, r.finished_at, r.options_json,"
                " r.lease_until, r.owner,"
                " (SELECT COALESCE(SUM(u.cost_usd), 0.0) FROM usage_log u WHERE u.run_id = r.run_id) AS cost_usd,"
                " (SELECT COALESCE(SUM(json_extract(s.spend_json, '$.cost_usd')), 0.0) FROM syntheses s"
                "  WHERE s.run_id = r.run_id) AS synthesis_cost_usd"
                " FROM runs r JOIN plans p ON p.plan_id = r.plan_id ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
            counts: dict[str, dict[str, int]] = {r["run_id"]: {} for r in rows}
            marks = ", ".join("?" * len(counts))
            for c in db.execute(
                f"SELECT run_id, status, COUNT(*) FROM task_results WHERE run_id IN ({marks}) GROUP BY run_id, status",
                list(counts),
            ):
                counts[c[0]][c[1]] = c[2]
        return [
            RunSummary.model_validate(
                {
                    **dict(r),
                    "status": effective_status(r["status"], _time(r["lease_until"]), r["owner"], now),
                    "task": preview(r["task"]),
                    "counts": counts[r["run_id"]],
                    "total_cost_usd": round(
                        r["cost_usd"] + r["synthesis_cost_usd"] + planning_cost(r["options_json"]), 8
                    ),
                }
            )
            for r in rows
        ]


def _insert_usage(
    db: sqlite3.Connection, run_id: str, task_id: str, model: str | None, usage: Usage, cost_usd: float, at: str
) -> None:
    db.execute(
        "INSERT INTO usage_log (run_id, task_id, model, input_tokens, output_tokens, cache_read_tokens,"
        " cache_write_tokens, cost_usd, at, web_search_requests, web_fetch_requests)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, task_id, model, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
         usage.cache_write_tokens, cost_usd, at, usage.web_search_requests, usage.web_fetch_requests),
    )  # fmt: skip


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _database_file(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT file FROM pragma_database_list WHERE name = 'main'").fetchone()
    return row[0] if row and row[0] else MEMORY
