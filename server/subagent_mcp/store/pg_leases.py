"""Run ownership in PostgreSQL: take a run over, renew leases by heartbeat, cancel requests, interrupt what no one
holds. A mixin of ``PostgresStore`` (it uses the store's transactions, clock, owner id and lease)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from .records import Heartbeat, RunRecord, StoreError
from .rows import TEMPORAL_OWNER_PREFIX, held
from .takeover import takeover_refusal

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")


class PostgresLeases:
    """Who runs which run, for ``PostgresStore``; see the module docstring."""

    if TYPE_CHECKING:
        path: str
        owner: str
        _now: Callable[[], datetime]

        async def _tx(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T: ...

        def _lease(self, now: datetime) -> datetime: ...

        async def _read_run(self, db: asyncpg.Connection, run_id: str) -> RunRecord | None: ...

    async def resume_run(self, run_id: str, *, not_running_here: bool = False) -> RunRecord:
        async def go(db: asyncpg.Connection) -> RunRecord | None:
            now = self._now()
            row = await db.fetchrow(
                "SELECT status, pid, owner, lease_until FROM runs WHERE run_id = $1 FOR UPDATE", run_id
            )
            if row is None:
                raise StoreError(f"No run {run_id!r} is stored in {self.path}.", self.path)
            refusal = takeover_refusal(
                run_id, row["status"], row["owner"], row["pid"], me=self.owner, not_running_here=not_running_here,
                held=held(row["lease_until"], row["owner"], now, pid=row["pid"]),
            )  # fmt: skip
            if refusal is not None:
                raise StoreError(refusal, self.path)
            await db.execute(
                "UPDATE runs SET status = 'running', pid = $1, owner = $2, lease_until = $3,"
                " cancel_requested_at = NULL, updated_at = $4, finished_at = NULL, report_json = NULL"
                " WHERE run_id = $5",
                os.getpid(), self.owner, self._lease(now), now, run_id,
            )  # fmt: skip
            return await self._read_run(db, run_id)

        record = await self._tx(f"resume run {run_id}", go)
        assert record is not None
        return record

    async def interrupt_runs(self, run_ids: list[str]) -> None:
        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "UPDATE runs SET status = 'interrupted', report_json = NULL, finished_at = NULL, updated_at = $1,"
                " cancel_requested_at = NULL WHERE run_id = ANY($2::text[]) AND owner = $3",
                self._now(), run_ids, self.owner,
            )  # fmt: skip

        await self._tx("mark runs interrupted", go)

    async def heartbeat(self, live: list[str]) -> Heartbeat:
        async def go(db: asyncpg.Connection) -> Heartbeat:
            lease = self._lease(self._now())
            await db.execute(  # a run on Temporal too, while this server follows it or synthesizes its answer
                "UPDATE runs SET lease_until = $1 WHERE (owner = $2 AND status = 'running')"
                " OR (run_id = ANY($3::text[]) AND (owner = $2 OR owner LIKE $4))",
                lease, self.owner, live, TEMPORAL_OWNER_PREFIX + "%",
            )  # fmt: skip
            cancel = await db.fetch(
                "SELECT run_id FROM runs WHERE owner = $1 AND status = 'running' AND cancel_requested_at IS NOT NULL",
                self.owner,
            )
            lost = await db.fetch(
                "SELECT run_id FROM runs WHERE run_id = ANY($1::text[]) AND status = 'running' AND owner <> $2"
                " AND owner NOT LIKE $3",  # a run on Temporal is followed here, never lost
                live, self.owner, TEMPORAL_OWNER_PREFIX + "%",
            )  # fmt: skip
            return Heartbeat(cancel=[r[0] for r in cancel], lost=[r[0] for r in lost])

        return await self._tx("renew the run leases", go)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        async def go(db: asyncpg.Connection) -> RunRecord | None:
            now = self._now()
            await db.execute(
                "UPDATE runs SET cancel_requested_at = $1 WHERE run_id = $2 AND status = 'running'", now, run_id
            )
            return await self._read_run(db, run_id)

        return await self._tx(f"request the cancellation of run {run_id}", go)

    async def mark_interrupted(self) -> list[str]:
        async def go(db: asyncpg.Connection) -> list[str]:
            now = self._now()
            rows = await db.fetch(
                "SELECT run_id, pid, owner, lease_until FROM runs WHERE status = 'running' ORDER BY created_at"
                " FOR UPDATE"
            )
            gone = [r["run_id"] for r in rows if not held(r["lease_until"], r["owner"], now, pid=r["pid"])]
            await db.execute(
                "UPDATE runs SET status = 'interrupted', updated_at = $1 WHERE run_id = ANY($2::text[])", now, gone
            )
            return gone

        return await self._tx("mark interrupted runs", go)
