"""Several servers on one database: leases kept by heartbeat, and runs another server owns, waited on or cancelled.

A server owns the runs it creates or resumes for as long as its heartbeat renews their lease in the store.
Another server reads such a run from the store: ``wait_elsewhere`` polls it until it ends (the same result
its owner returns), and ``cancel_elsewhere`` records a cancel request that the owner's heartbeat acts on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .background import HEARTBEAT_S, Outcome, RunRegistry, Watcher
from .errors import InputError
from .handles import RunHandle
from .runs import stored_counts, stored_handle
from .settings import Settings
from .store import RunRecord, Store, StoreError, default_db_path, is_temporal_owner

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)

MAX_HEARTBEAT_S = 2.0
"""Heartbeats come at most this far apart (a cancel request from another server waits at most this long)."""

POLL_S = (0.05, 0.5)
"""A run another server owns is read back from the store this often: from the first value, doubling to the second."""


def store_location(settings: Settings) -> str | Path:
    """The database the settings name: ``SUBAGENT_MCP_DB_URL`` (PostgreSQL), else the SQLite file."""
    if settings.db_url is not None:
        return settings.db_url.get_secret_value()
    return settings.db_path or default_db_path()


def heartbeat_s(lease_s: float) -> float:
    """How often an owner renews its leases: three times per lease, and at least every ``MAX_HEARTBEAT_S``."""
    return min(lease_s / 3, MAX_HEARTBEAT_S)


async def keep_leases(store: Store, runs: RunRegistry, scope: anyio.CancelScope) -> None:
    """Until ``scope`` is cancelled: renew this server's leases, and stop its runs that another server asked to
    cancel (or took over after a lapse)."""
    with scope:
        async with anyio.create_task_group() as tg:
            while True:
                await anyio.sleep(heartbeat_s(store.lease_s))
                try:
                    beat = await store.heartbeat([run.run_id for run in runs.live()])
                except StoreError as exc:  # a database that is briefly away must not stop the server
                    log.warning("could not renew the run leases: %s", exc)
                    continue
                except Exception:  # a bug here must not take the server (and every run in it) down either
                    log.exception("could not renew the run leases")
                    continue
                for run_id in dict.fromkeys([*beat.cancel, *beat.lost]):
                    live = runs.get(run_id)
                    if live is not None and not live.done.is_set() and live.stopped is None:
                        why = "another server took it over" if run_id in beat.lost else "cancel_run on another server"
                        log.info("stopping run %s: %s", run_id, why)
                        tg.start_soon(runs.stop, live, "cancel")


def _ended(record: RunRecord) -> bool:
    """Whether a stored run has its final result: not running, and an orchestration's synthesis is settled."""
    if record.status == "running":
        return False
    return not record.options.orchestrated or record.concluded or not record.lease_live(datetime.now(UTC))


async def wait_elsewhere(service: Service, run_id: str, wait_s: float, watcher: Watcher | None) -> Outcome | RunHandle:
    """Wait up to ``wait_s`` for a run this server does not run; its result, or a handle, as its owner would give.

    Progress comes from the stored results (told to ``watcher`` as they change, and again every heartbeat).

    Raises:
        InputError: no run with that id.
    """
    delay, told, quiet = POLL_S[0], None, 0.0
    with anyio.move_on_after(wait_s):
        while True:
            plan, record = await service.get_run(run_id)
            if _ended(record):
                break
            counts = stored_counts(plan, record)
            step = (counts.done, counts.total, f"{counts.done}/{counts.total} done (run {record.status} elsewhere)")
            if watcher is not None and (step != told or quiet >= HEARTBEAT_S):
                await watcher(*step, "info")
                told, quiet = step, 0.0
            await anyio.sleep(delay)
            quiet += delay
            delay = min(delay * 2, POLL_S[1])
    plan, record = await service.get_run(run_id)
    if record.status != "running" and not _ended(record):  # its subtasks are done; its owner is synthesizing
        where = f"its server is synthesizing the answer; wait_run(run_id={run_id!r}) returns it"
        return stored_handle(plan, record, "running", where, phase="synthesizing")
    return await service.outcome(run_id)


async def cancel_elsewhere(service: Service, run_id: str) -> Outcome | RunHandle:
    """Ask the server running ``run_id`` to cancel it, and wait (a few heartbeats) for it to do so.

    Returns the stored outcome once the owner has stopped the run, else a handle that says the request stands.

    Raises:
        InputError: no such run, or it is not running anywhere.
    """
    held = await service.store.get_run(run_id)
    if held is not None and held.status == "running" and is_temporal_owner(held.owner):  # no server's heartbeat
        raise InputError(
            f"run {run_id!r} runs on Temporal ({held.owner}); cancel it through a server with "
            "SUBAGENT_MCP_EXECUTOR=temporal on that namespace and task queue"
        )
    record = await service.store.request_cancel(run_id)
    if record is None or record.status != "running":
        raise InputError(f"run {run_id!r} is not running in this server: {await service.where(run_id)}")
    with anyio.move_on_after(3 * heartbeat_s(service.store.lease_s) + 5.0):
        delay = POLL_S[0]
        while record is not None and record.status == "running":
            await anyio.sleep(delay)
            delay = min(delay * 2, POLL_S[1])
            record = await service.store.get_run(run_id)
    outcome = await service.outcome(run_id)
    if isinstance(outcome, RunHandle) and outcome.status == "running":
        owner = record.owner if record is not None else "its server"
        return outcome.model_copy(
            update={
                "next": f"cancel requested: the server running it ({owner}) stops it at its next heartbeat. "
                f"wait_run(run_id={run_id!r}) returns how it ended."
            }
        )
    return outcome
