"""The store's record of Message Batches: which batch carries which request of which subtask, and what was taken.

A batch is recorded (with every request's ``custom_id``, subtask and request digest) the moment the
API has accepted it, so a server that restarts finds a request still in flight by its digest and waits
for that batch instead of sending the request again. A request's result is marked consumed when it is
handed to its subtask: a later attempt of the same request (a resumed failure) is then sent afresh.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

BatchState = Literal["in_progress", "ended", "canceled"]


class BatchEntry(BaseModel):
    """One request of a batch: its ``custom_id`` there, the subtask it is for, and its request's digest."""

    model_config = ConfigDict(frozen=True)

    batch_id: str = ""
    custom_id: str
    task_id: str
    digest: str


class BatchRecord(BaseModel):
    """A batch a run sent: its state here, and how many of its requests were handed to their subtasks."""

    model_config = ConfigDict(frozen=True)

    batch_id: str
    status: BatchState
    requests: int
    consumed: int
    task_ids: list[str]


class BatchRecords:
    """Batch methods of ``SqliteStore`` (a mixin): each one transaction, committed on return."""

    if TYPE_CHECKING:

        def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[sqlite3.Connection]: ...

        def _stamp(self) -> str: ...

    def record_batch(self, run_id: str, batch_id: str, entries: Sequence[BatchEntry]) -> None:
        """Keep a batch the API accepted for ``run_id`` and every request it carries."""
        stamp = self._stamp()
        with self._tx(f"record batch {batch_id} of run {run_id}") as db:
            db.execute(
                "INSERT INTO batches (batch_id, run_id, status, created_at) VALUES (?, ?, 'in_progress', ?)",
                (batch_id, run_id, stamp),
            )
            db.executemany(
                "INSERT INTO batch_requests (batch_id, custom_id, task_id, digest) VALUES (?, ?, ?, ?)",
                [(batch_id, e.custom_id, e.task_id, e.digest) for e in entries],
            )

    def open_batch_request(self, run_id: str, digest: str) -> BatchEntry | None:
        """The request of ``run_id`` with this digest whose result nobody has taken yet, in a batch not cancelled."""
        with self._tx("find a batch request", write=False) as db:
            row = db.execute(
                "SELECT r.batch_id, r.custom_id, r.task_id, r.digest FROM batch_requests r"
                " JOIN batches b ON b.batch_id = r.batch_id WHERE b.run_id = ? AND r.digest = ?"
                " AND r.consumed_at IS NULL AND b.status != 'canceled' ORDER BY b.rowid LIMIT 1",
                (run_id, digest),
            ).fetchone()
        return None if row is None else BatchEntry.model_validate(dict(row))

    def batch_requests(self, batch_id: str) -> list[BatchEntry]:
        """Every request ``batch_id`` carries, as recorded when it was sent (what its results file may name)."""
        with self._tx(f"read the requests of batch {batch_id}", write=False) as db:
            rows = db.execute(
                "SELECT batch_id, custom_id, task_id, digest FROM batch_requests WHERE batch_id = ? ORDER BY custom_id",
                (batch_id,),
            ).fetchall()
        return [BatchEntry.model_validate(dict(r)) for r in rows]

    def consume_batch_requests(self, batch_id: str, custom_ids: Sequence[str]) -> None:
        """Mark these requests' results as handed to their subtasks."""
        stamp = self._stamp()
        with self._tx(f"mark results of batch {batch_id} taken") as db:
            db.executemany(
                "UPDATE batch_requests SET consumed_at = ?"
                " WHERE batch_id = ? AND custom_id = ? AND consumed_at IS NULL",
                [(stamp, batch_id, c) for c in custom_ids],
            )

    def end_batch(self, batch_id: str, status: BatchState) -> None:
        """Record that a batch ended (or that we cancelled it)."""
        with self._tx(f"end batch {batch_id}") as db:
            db.execute(
                "UPDATE batches SET status = ?, ended_at = ? WHERE batch_id = ?", (status, self._stamp(), batch_id)
            )

    def run_batches(self, run_id: str) -> list[BatchRecord]:
        """The batches ``run_id`` sent, oldest first."""
        with self._tx(f"read the batches of run {run_id}", write=False) as db:
            rows = db.execute(
                "SELECT b.batch_id, b.status, COUNT(r.custom_id) AS requests, COUNT(r.consumed_at) AS consumed,"
                " GROUP_CONCAT(r.task_id, ' ') AS task_ids FROM batches b"
                " LEFT JOIN batch_requests r ON r.batch_id = b.batch_id WHERE b.run_id = ?"
                " GROUP BY b.batch_id ORDER BY b.rowid",
                (run_id,),
            ).fetchall()
        return [
            BatchRecord.model_validate({**dict(r), "task_ids": sorted(set(str(r["task_ids"] or "").split()))})
            for r in rows
        ]
