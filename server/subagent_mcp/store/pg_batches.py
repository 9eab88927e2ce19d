"""The batch records of ``store/batches.py`` in PostgreSQL: a mixin of ``PostgresStore`` (its transactions, clock)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from .batches import BatchEntry, BatchRecord, BatchState

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")


class PostgresBatches:
    """Batch methods of ``PostgresStore``; the same records and rules as ``BatchRecords`` on SQLite."""

    if TYPE_CHECKING:
        _now: Callable[[], datetime]

        async def _tx(self, what: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T: ...

    async def record_batch(self, run_id: str, batch_id: str, entries: Sequence[BatchEntry]) -> None:
        """Keep a batch the API accepted for ``run_id`` and every request it carries."""

        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO batches (batch_id, run_id, status, created_at) VALUES ($1, $2, 'in_progress', $3)",
                batch_id, run_id, self._now(),
            )  # fmt: skip
            await db.executemany(
                "INSERT INTO batch_requests (batch_id, custom_id, task_id, digest) VALUES ($1, $2, $3, $4)",
                [(batch_id, e.custom_id, e.task_id, e.digest) for e in entries],
            )

        await self._tx(f"record batch {batch_id} of run {run_id}", go)

    async def open_batch_request(self, run_id: str, digest: str) -> BatchEntry | None:
        """The request of ``run_id`` with this digest whose result nobody has taken yet, in a batch not cancelled."""

        async def go(db: asyncpg.Connection) -> BatchEntry | None:
            row = await db.fetchrow(
                "SELECT r.batch_id, r.custom_id, r.task_id, r.digest FROM batch_requests r"
                " JOIN batches b ON b.batch_id = r.batch_id WHERE b.run_id = $1 AND r.digest = $2"
                " AND r.consumed_at IS NULL AND b.status != 'canceled' ORDER BY b.ord LIMIT 1",
                run_id, digest,
            )  # fmt: skip
            return None if row is None else BatchEntry.model_validate(dict(row))

        return await self._tx("find a batch request", go)

    async def batch_requests(self, batch_id: str) -> list[BatchEntry]:
        """Every request ``batch_id`` carries, as recorded when it was sent (what its results file may name)."""

        async def go(db: asyncpg.Connection) -> list[BatchEntry]:
            rows = await db.fetch(
                "SELECT batch_id, custom_id, task_id, digest FROM batch_requests WHERE batch_id = $1"
                " ORDER BY custom_id",
                batch_id,
            )
            return [BatchEntry.model_validate(dict(r)) for r in rows]

        return await self._tx(f"read the requests of batch {batch_id}", go)

    async def consume_batch_requests(self, batch_id: str, custom_ids: Sequence[str]) -> None:
        """Mark these requests' results as handed to their subtasks."""

        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "UPDATE batch_requests SET consumed_at = $1"
                " WHERE batch_id = $2 AND custom_id = ANY($3::text[]) AND consumed_at IS NULL",
                self._now(), batch_id, list(custom_ids),
            )  # fmt: skip

        await self._tx(f"mark results of batch {batch_id} taken", go)

    async def end_batch(self, batch_id: str, status: BatchState) -> None:
        """Record that a batch ended (or that we cancelled it)."""

        async def go(db: asyncpg.Connection) -> None:
            await db.execute(
                "UPDATE batches SET status = $1, ended_at = $2 WHERE batch_id = $3", status, self._now(), batch_id
            )

        await self._tx(f"end batch {batch_id}", go)

    async def run_batches(self, run_id: str) -> list[BatchRecord]:
        """The batches ``run_id`` sent, oldest first."""

        async def go(db: asyncpg.Connection) -> list[BatchRecord]:
            rows = await db.fetch(
                "SELECT b.batch_id, b.status, COUNT(r.custom_id) AS requests, COUNT(r.consumed_at) AS consumed,"
                " COALESCE(ARRAY_AGG(r.task_id) FILTER (WHERE r.task_id IS NOT NULL), '{}') AS task_ids"
                " FROM batches b LEFT JOIN batch_requests r ON r.batch_id = b.batch_id WHERE b.run_id = $1"
                " GROUP BY b.batch_id, b.ord ORDER BY b.ord",
                run_id,
            )
            return [BatchRecord.model_validate({**dict(r), "task_ids": sorted(set(r["task_ids"]))}) for r in rows]

        return await self._tx(f"read the batches of run {run_id}", go)
