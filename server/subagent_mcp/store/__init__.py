"""Durable runs in SQLite or PostgreSQL: plans, runs, the latest result per task, and the usage of every attempt.

``Store`` is what the service uses: one async facade over either adapter. SQLite (the default) runs each
``SqliteStore`` call in a worker thread behind a ``CapacityLimiter(1)``, so disk I/O stays off the event
loop and writes are serialised; PostgreSQL (``SUBAGENT_MCP_DB_URL``) is ``PostgresStore`` on asyncpg.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

from ..contracts import Plan, RunReport, Spend, SubagentResult, Synthesis, Usage
from ..run_options import RunOptions
from .batches import BatchEntry, BatchRecord, BatchState
from .migrations import MIGRATIONS, migrate
from .paths import MEMORY, default_db_path, pid_alive
from .records import DB_PATH_ENV, DB_URL_ENV, Heartbeat, RunRecord, RunState, RunSummary, StoreError
from .rows import LEASE_S, is_postgres_url, is_temporal_owner, new_owner_id, shown_url, temporal_owner
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = [
    "DB_PATH_ENV",
    "DB_URL_ENV",
    "LEASE_S",
    "MEMORY",
    "MIGRATIONS",
    "BatchEntry",
    "BatchRecord",
    "BatchState",
    "Heartbeat",
    "RunRecord",
    "RunState",
    "RunSummary",
    "SqliteStore",
    "Store",
    "StoreError",
    "default_db_path",
    "is_temporal_owner",
    "migrate",
    "pid_alive",
    "shown_url",
    "temporal_owner",
]

T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """The async store: the same methods on SQLite (a worker thread, one call at a time) and on PostgreSQL.

    A caller cancelled mid-call still waits for its write to land (``to_thread`` does not abandon threads;
    PostgreSQL calls are shielded), so a committed result is never half-written.
    """

    def __init__(self, impl: SqliteStore | PostgresStore) -> None:
        self._impl = impl
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        location: str | Path,
        *,
        owner: str | None = None,
        lease_s: float = LEASE_S,
        now: Callable[[], datetime] = _utcnow,
    ) -> AsyncGenerator[Store]:
        """Open (create, check, migrate) the database at ``location`` and close it on exit.

        ``location``: a SQLite file, ``":memory:"``, or a ``postgresql://`` URL. Runs this store creates or
        resumes are ``owner``'s (default: a fresh id), leased for ``lease_s`` past each ``heartbeat``.

        Raises:
            StoreError: the database cannot be used; the message names it (never its password) and what to do.
        """
        owner = owner or new_owner_id()
        if isinstance(location, str) and is_postgres_url(location):
            from .postgres import PostgresStore

            pg = await PostgresStore.open(location, owner=owner, lease_s=lease_s, now=now)
            try:
                yield cls(pg)
            finally:
                with anyio.CancelScope(shield=True):
                    await pg.close()
            return
        sync = await anyio.to_thread.run_sync(lambda: SqliteStore.open(location, now=now, owner=owner, lease_s=lease_s))
        try:
            yield cls(sync)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sync.close)

    @property
    def path(self) -> str:
        """Where the runs are: the SQLite file, or the PostgreSQL URL without its password."""
        return self._impl.path

    @property
    def owner(self) -> str:
        """This server's id in the store: the owner of the runs it creates or resumes."""
        return self._impl.owner

    def as_owner(self, owner: str) -> Store:
        """This store acting for ``owner`` (runs on Temporal): the same database and connections, closed with this."""
        view = Store(copy.copy(self._impl))
        view._impl.owner = owner
        view._limiter = self._limiter  # SQLite: still one call at a time on the shared connection
        return view

    @property
    def lease_s(self) -> float:
        return self._impl.lease_s

    @property
    def sync(self) -> SqliteStore:
        """The synchronous SQLite store behind this one (for tests and the CLI's checks)."""
        if not isinstance(self._impl, SqliteStore):
            raise StoreError(f"The run database at {self.path} is PostgreSQL; it has no synchronous SQLite store.")
        return self._impl

    async def save_plan(self, plan: Plan) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.save_plan(plan))
        await self._impl.save_plan(plan)

    async def get_plan(self, plan_id: str) -> Plan | None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.get_plan(plan_id))
        return await self._impl.get_plan(plan_id)

    async def create_run(self, run_id: str, plan_id: str, options: RunOptions) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.create_run(run_id, plan_id, options))
        await self._impl.create_run(run_id, plan_id, options)

    async def resume_run(self, run_id: str, *, not_running_here: bool = False) -> RunRecord:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.resume_run(run_id, not_running_here=not_running_here))
        return await self._impl.resume_run(run_id, not_running_here=not_running_here)

    async def save_result(self, run_id: str, result: SubagentResult, *, record_usage: bool = True) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.save_result(run_id, result, record_usage=record_usage))
        await self._impl.save_result(run_id, result, record_usage=record_usage)

    async def log_usage(self, run_id: str, task_id: str, model: str | None, usage: Usage, cost_usd: float) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.log_usage(run_id, task_id, model, usage, cost_usd))
        await self._impl.log_usage(run_id, task_id, model, usage, cost_usd)

    async def finish_run(self, run_id: str, report: RunReport) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.finish_run(run_id, report))
        await self._impl.finish_run(run_id, report)

    async def save_synthesis(self, run_id: str, synthesis: Synthesis | None, spend: Spend) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.save_synthesis(run_id, synthesis, spend))
        await self._impl.save_synthesis(run_id, synthesis, spend)

    async def log_planning(
        self, plan_id: str | None, run_id: str | None, model: str | None, spend: Spend, error: str | None = None
    ) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.log_planning(plan_id, run_id, model, spend, error))
        await self._impl.log_planning(plan_id, run_id, model, spend, error)

    async def failed_planning(self) -> Spend:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.failed_planning())
        return await self._impl.failed_planning()

    async def interrupt_runs(self, run_ids: list[str]) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.interrupt_runs(run_ids))
        await self._impl.interrupt_runs(run_ids)

    async def get_run(self, run_id: str) -> RunRecord | None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.get_run(run_id))
        return await self._impl.get_run(run_id)

    async def list_runs(self, limit: int = 20) -> list[RunSummary]:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.list_runs(limit))
        return await self._impl.list_runs(limit)

    async def mark_interrupted(self) -> list[str]:
        """Mark ``interrupted`` the ``running`` runs no live server holds any more; return their ids."""
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.mark_interrupted())
        return await self._impl.mark_interrupted()

    async def heartbeat(self, live: list[str]) -> Heartbeat:
        """Renew this server's leases (``live``: its runs still going, e.g. synthesizing); say what to stop."""
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.heartbeat(live))
        return await self._impl.heartbeat(live)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        """Ask whichever server runs ``run_id`` to cancel it (at its next heartbeat); the run as it stands."""
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.request_cancel(run_id))
        return await self._impl.request_cancel(run_id)

    async def record_batch(self, run_id: str, batch_id: str, entries: list[BatchEntry]) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.record_batch(run_id, batch_id, entries))
        await self._impl.record_batch(run_id, batch_id, entries)

    async def open_batch_request(self, run_id: str, digest: str) -> BatchEntry | None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.open_batch_request(run_id, digest))
        return await self._impl.open_batch_request(run_id, digest)

    async def batch_requests(self, batch_id: str) -> list[BatchEntry]:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.batch_requests(batch_id))
        return await self._impl.batch_requests(batch_id)

    async def consume_batch_requests(self, batch_id: str, custom_ids: list[str]) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.consume_batch_requests(batch_id, custom_ids))
        await self._impl.consume_batch_requests(batch_id, custom_ids)

    async def end_batch(self, batch_id: str, status: BatchState) -> None:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.end_batch(batch_id, status))
        await self._impl.end_batch(batch_id, status)

    async def run_batches(self, run_id: str) -> list[BatchRecord]:
        if isinstance(self._impl, SqliteStore):
            return await self._thread(lambda s: s.run_batches(run_id))
        return await self._impl.run_batches(run_id)

    async def _thread(self, fn: Callable[[SqliteStore], T]) -> T:
        sync = self._impl
        assert isinstance(sync, SqliteStore)
        return await anyio.to_thread.run_sync(lambda: fn(sync), limiter=self._limiter)
