"""Durable runs in SQLite: plans, runs, the latest result per task, and the usage of every attempt.

``Store`` is what the service uses: an async facade that runs each ``SqliteStore`` call in a worker
thread behind a ``CapacityLimiter(1)``, so disk I/O stays off the event loop and writes are serialised.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from ..contracts import JsonObject, Plan, RunReport, Spend, SubagentResult, Synthesis, Usage
from .migrations import MIGRATIONS, migrate
from .paths import MEMORY, default_db_path, pid_alive
from .records import DB_PATH_ENV, RunRecord, RunState, RunSummary, StoreError
from .sqlite import SqliteStore

__all__ = [
    "DB_PATH_ENV",
    "MEMORY",
    "MIGRATIONS",
    "RunRecord",
    "RunState",
    "RunSummary",
    "SqliteStore",
    "Store",
    "StoreError",
    "default_db_path",
    "migrate",
    "pid_alive",
]

T = TypeVar("T")


class Store:
    """The async store: same methods as ``SqliteStore``, each awaited in a worker thread, one at a time.

    A caller cancelled mid-call still waits for its write to land (``to_thread`` does not abandon threads),
    so a committed result is never half-written.
    """

    def __init__(self, sync: SqliteStore) -> None:
        self.sync = sync
        self._limiter = anyio.CapacityLimiter(1)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path) -> AsyncGenerator[Store]:
        """Open (create, check, migrate) the database at ``path`` or ``":memory:"``; close it on exit.

        Raises:
            StoreError: the file cannot be used; the message names it and says what to do.
        """
        sync = await anyio.to_thread.run_sync(SqliteStore.open, path)
        try:
            yield cls(sync)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(sync.close)

    @property
    def path(self) -> str:
        return self.sync.path

    async def _call(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def save_plan(self, plan: Plan) -> None:
        await self._call(lambda: self.sync.save_plan(plan))

    async def get_plan(self, plan_id: str) -> Plan | None:
        return await self._call(lambda: self.sync.get_plan(plan_id))

    async def create_run(self, run_id: str, plan_id: str, options: JsonObject) -> None:
        await self._call(lambda: self.sync.create_run(run_id, plan_id, options))

    async def resume_run(self, run_id: str, *, not_running_here: bool = False) -> RunRecord:
        return await self._call(lambda: self.sync.resume_run(run_id, not_running_here=not_running_here))

    async def save_result(self, run_id: str, result: SubagentResult, *, record_usage: bool = True) -> None:
        await self._call(lambda: self.sync.save_result(run_id, result, record_usage=record_usage))

    async def log_usage(self, run_id: str, task_id: str, model: str | None, usage: Usage, cost_usd: float) -> None:
        await self._call(lambda: self.sync.log_usage(run_id, task_id, model, usage, cost_usd))

    async def finish_run(self, run_id: str, report: RunReport) -> None:
        await self._call(lambda: self.sync.finish_run(run_id, report))

    async def set_estimate(self, run_id: str, estimate: JsonObject) -> None:
        await self._call(lambda: self.sync.set_estimate(run_id, estimate))

    async def save_synthesis(self, run_id: str, synthesis: Synthesis | None, spend: Spend) -> None:
        await self._call(lambda: self.sync.save_synthesis(run_id, synthesis, spend))

    async def log_planning(
        self, plan_id: str | None, run_id: str | None, model: str | None, spend: Spend, error: str | None = None
    ) -> None:
        await self._call(lambda: self.sync.log_planning(plan_id, run_id, model, spend, error))

    async def failed_planning(self) -> Spend:
        return await self._call(self.sync.failed_planning)

    async def interrupt_runs(self, run_ids: list[str]) -> None:
        await self._call(lambda: self.sync.interrupt_runs(run_ids))

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._call(lambda: self.sync.get_run(run_id))

    async def list_runs(self, limit: int = 20) -> list[RunSummary]:
        return await self._call(lambda: self.sync.list_runs(limit))

    async def mark_interrupted(self) -> list[str]:
        return await self._call(self.sync.mark_interrupted)
