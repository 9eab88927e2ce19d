"""Run ownership in SQLite: take a run over, renew leases by heartbeat, cancel requests, interrupt what no one holds.

A mixin of ``SqliteStore`` (it uses the store's transaction, clock, owner id and lease).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .records import Heartbeat, RunRecord, StoreError
from .rows import TEMPORAL_OWNER_PREFIX, held, is_temporal_owner
from .takeover import takeover_refusal


class SqliteLeases:
    """Who runs which run, for ``SqliteStore``; see the module docstring."""

    if TYPE_CHECKING:
        path: str
        owner: str
        _now: Callable[[], datetime]

        def _tx(self, what: str, *, write: bool = True) -> AbstractContextManager[sqlite3.Connection]: ...

        def _lease(self, now: datetime) -> str: ...

        def _stamp(self) -> str: ...

        def _read_run(self, db: sqlite3.Connection, run_id: str) -> RunRecord | None: ...

    def resume_run(self, run_id: str, *, not_running_here: bool = False) -> RunRecord:
        """Take over a run that is not running (interrupted, failed, ...): mark it ``running`` here, return it.

        ``not_running_here``: the caller knows it runs no such run, so a ``running`` row this owner holds
        (left so by a store failure) may be taken over too.

        Raises:
            StoreError: no such run, or a live server (this one included) still holds its lease.
        """
        now = self._now()
        stamp = now.astimezone(UTC).isoformat()
        with self._tx(f"resume run {run_id}") as db:
            row = db.execute("SELECT status, pid, owner, lease_until FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"No run {run_id!r} is stored in {self.path}.", self.path)
            refusal = takeover_refusal(
                run_id, row["status"], row["owner"], row["pid"], held=self._held(row, now), me=self.owner,
                not_running_here=not_running_here,
            )  # fmt: skip
            if refusal is not None:
                raise StoreError(refusal, self.path)
            db.execute(
                "UPDATE runs SET status = 'running', pid = ?, owner = ?, lease_until = ?, cancel_requested_at = NULL,"
                " updated_at = ?, finished_at = NULL, report_json = NULL WHERE run_id = ?",
                (os.getpid(), self.owner, self._lease(now), stamp, run_id),
            )
            record = self._read_run(db, run_id)
        assert record is not None
        return record

    def interrupt_runs(self, run_ids: list[str]) -> None:
        """Mark runs this owner stopped at shutdown ``interrupted`` (resumable, as after a crash)."""
        stamp = self._stamp()
        with self._tx("mark runs interrupted") as db:
            db.executemany(
                "UPDATE runs SET status = 'interrupted', report_json = NULL, finished_at = NULL, updated_at = ?,"
                " cancel_requested_at = NULL WHERE run_id = ? AND owner = ?",
                [(stamp, run_id, self.owner) for run_id in run_ids],
            )

    def heartbeat(self, live: list[str]) -> Heartbeat:
        """Renew this owner's leases (its ``running`` runs and ``live``, e.g. still synthesizing); say what to stop."""
        now = self._now()
        with self._tx("renew the run leases") as db:
            db.execute(
                "UPDATE runs SET lease_until = ? WHERE owner = ? AND status = 'running'", (self._lease(now), self.owner)
            )
            db.executemany(  # a run on Temporal too, while this server follows it or synthesizes its answer
                "UPDATE runs SET lease_until = ? WHERE (owner = ? OR owner LIKE ?) AND run_id = ?",
                [(self._lease(now), self.owner, TEMPORAL_OWNER_PREFIX + "%", run_id) for run_id in live],
            )
            cancel = db.execute(
                "SELECT run_id FROM runs WHERE owner = ? AND status = 'running' AND cancel_requested_at IS NOT NULL",
                (self.owner,),
            ).fetchall()
            owners = {r[0]: r[1] for r in db.execute("SELECT run_id, owner FROM runs WHERE status = 'running'")}
        taken = {run_id for run_id, owner in owners.items() if owner != self.owner and not is_temporal_owner(owner)}
        lost = [run_id for run_id in live if run_id in taken]  # a run on Temporal is followed here, never lost
        return Heartbeat(cancel=[r[0] for r in cancel], lost=lost)

    def request_cancel(self, run_id: str) -> RunRecord | None:
        """Ask the server running ``run_id`` to cancel it (its heartbeat picks this up); the run as it stands."""
        stamp = self._stamp()
        with self._tx(f"request the cancellation of run {run_id}") as db:
            db.execute(
                "UPDATE runs SET cancel_requested_at = ? WHERE run_id = ? AND status = 'running'", (stamp, run_id)
            )
            return self._read_run(db, run_id)

    def _held(self, row: sqlite3.Row, now: datetime) -> bool:
        """Whether a ``running`` row's server still holds it: by lease, or (rows from before leases) by a live pid."""
        return held(_time(row["lease_until"]), row["owner"], now, pid=row["pid"])

    def mark_interrupted(self) -> list[str]:
        """Mark ``interrupted`` every ``running`` run no live server holds (its lease expired); return their ids.

        Runs another live server holds (on this machine or another, sharing the database) are left alone.
        """
        now = self._now()
        stamp = now.astimezone(UTC).isoformat()
        with self._tx("mark interrupted runs") as db:
            rows = db.execute(
                "SELECT run_id, pid, owner, lease_until FROM runs WHERE status = 'running' ORDER BY rowid"
            ).fetchall()
            gone = [r["run_id"] for r in rows if not self._held(r, now)]
            db.executemany(
                "UPDATE runs SET status = 'interrupted', updated_at = ? WHERE run_id = ?", [(stamp, g) for g in gone]
            )
        return gone


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
