"""Batch mode: a run's subtask calls go out as Message Batches, gathered as the subtasks become ready.

``BatchBackend`` is the run's ``ModelBackend``: each call joins the pending batch and waits for its
result. The pending batch is sent once every running subtask has either reached the batch or ended
(so what becomes ready at once travels together; an event-driven gather, bounded by
``SUBAGENT_MCP_BATCH_GATHER_S`` for a subtask held up elsewhere, e.g. waiting on the budget). Each
batch is recorded in the store with its requests' custom ids, subtasks and digests before anything
waits on it; a call whose request (same digest) is already in a recorded batch of this run waits for
that batch instead of sending it again: a restarted server re-attaches to batches in flight.
Each batch is polled every ``SUBAGENT_MCP_BATCH_POLL_S``. A repair turn is just the next call, so it
goes in the next batch, at the batch price too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .contracts import Completion, CompletionRequest, SubagentResult, Subtask
from .core.executor import RunTask
from .errors import InputError, ModelError, ModelReplyError, ModelRequestError, SubagentMCPError
from .store import BatchEntry, Store, StoreError

log = logging.getLogger(__name__)

Outcome = Completion | ModelError

SETTLE_CHECKPOINTS = 3
"""Loop turns a settled gather yields before sending, so subtasks woken in the same turn join the batch."""


class BatchAPI(Protocol):
    """What batch mode needs of the Message Batches API (``backends/batch.py``)."""

    async def submit(self, requests: Sequence[tuple[str, CompletionRequest]]) -> str: ...

    async def ended(self, batch_id: str) -> bool: ...

    async def results(self, batch_id: str, expected: Mapping[str, str | None]) -> dict[str, Outcome]: ...

    async def cancel(self, batch_id: str) -> None: ...

    async def aclose(self) -> None: ...


def request_digest(request: CompletionRequest) -> str:
    """What identifies a request across restarts: everything the model sees, not its cache marks or label."""
    seen = request.model_dump(mode="json", include={"model", "system", "messages", "output_schema", "max_tokens"})
    seen["server_tools"] = request.server_tools
    return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()


@dataclass(eq=False)
class _Waiter:
    """One call waiting for its batch's result."""

    request: CompletionRequest
    digest: str
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None

    def end(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.done.set()


@dataclass(eq=False)
class _Batch:
    """A batch in flight: its waiters by custom_id and, once read, every request's outcome.

    ``models`` names every request the batch carries (custom_id -> its model, None for a request of a
    re-attached batch whose subtask has not attached yet): its results file may name no other.
    """

    batch_id: str
    models: dict[str, str | None]
    waiters: dict[str, _Waiter] = field(default_factory=dict[str, _Waiter])
    outcomes: dict[str, Outcome] | None = None
    failure: ModelError | None = None


class BatchBackend:
    """One run's calls as Message Batches; use inside ``running()`` and wrap ``run_task`` with ``track``."""

    def __init__(self, api: BatchAPI, store: Store, run_id: str, *, poll_s: float, gather_s: float) -> None:
        self._api, self._store, self._run_id = api, store, run_id
        self._poll_s, self._gather_s = poll_s, gather_s
        self._pending: list[_Waiter] = []
        self._batches: dict[str, _Batch] = {}
        self._active = 0
        self._waiting = 0
        self._changed = anyio.Event()
        self._tg: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[BatchBackend]:
        """Gather and poll while the block runs; on exit, stop polling (batches in flight stay recorded)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._gather)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await self._api.aclose()

    def track(self, run_task: RunTask) -> RunTask:
        """``run_task`` counted as running, so the gather knows whom it still waits for."""

        async def tracked(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
            self._active += 1
            try:
                return await run_task(subtask, deps)
            finally:
                self._active -= 1
                self._poke()

        return tracked

    async def complete(self, request: CompletionRequest) -> Completion:
        """The request's reply from its batch (one already carrying it, else the next one sent).

        Raises:
            ModelError: the batch could not be sent or read, or this request errored, expired or was canceled.
        """
        waiter = _Waiter(request, request_digest(request))
        entry = await self._store.open_batch_request(self._run_id, waiter.digest)
        recorded: list[BatchEntry] = []
        if entry is not None and entry.batch_id not in self._batches:  # its siblings may attach after it ends
            recorded = await self._store.batch_requests(entry.batch_id)
        self._waiting += 1  # counted from here: until now the gather still waited for this call
        try:
            if entry is not None:
                self._attach(entry, waiter, recorded)
            else:
                self._pending.append(waiter)
            self._poke()
            await waiter.done.wait()
        finally:
            self._waiting -= 1
            if waiter in self._pending:  # cancelled before its batch went out
                self._pending.remove(waiter)
            self._poke()
        assert waiter.outcome is not None
        if isinstance(waiter.outcome, ModelError):
            raise waiter.outcome
        return waiter.outcome

    async def aclose(self) -> None:
        """The API client is closed when ``running`` ends."""
        return None

    def _poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _settled(self) -> bool:
        """Every running subtask is waiting on a batch (or about to send): nothing more is coming now."""
        return bool(self._pending) and self._active <= self._waiting

    async def _gather(self) -> None:
        """Send what is pending each time the running subtasks have all reached a batch (or the window ends)."""
        while True:
            while not self._pending:
                await self._changed.wait()
            with anyio.move_on_after(self._gather_s):
                while True:
                    if self._settled():
                        for _ in range(SETTLE_CHECKPOINTS):
                            await anyio.lowlevel.checkpoint()
                        if self._settled():
                            break
                    else:
                        await self._changed.wait()
            waiters, self._pending = self._pending, []
            if not waiters:  # every waiter was cancelled meanwhile
                continue
            batches: list[_Batch] = []
            with anyio.CancelScope(shield=True):  # a batch the API accepted is always recorded
                batches = await self._send(waiters)
            for batch in batches:
                if self._tg is not None:
                    self._tg.start_soon(self._poll, batch)

    async def _send(self, waiters: list[_Waiter]) -> list[_Batch]:
        """Send ``waiters`` as one batch; a request that cannot be sent fails alone, its siblings go out without it.

        Whatever goes wrong ends the waiters' calls with an error, never the run: the gather is the run's task.
        """
        pairs = [(f"r{i}-{w.digest[:16]}", w) for i, w in enumerate(waiters)]
        try:
            batch_id = await self._api.submit([(cid, w.request) for cid, w in pairs])
        except InputError as exc:  # a request the API cannot take (its schema), found before anything is sent
            if len(waiters) == 1:
                waiters[0].end(ModelRequestError(str(exc)))
                return []
            half = len(waiters) // 2  # halve until the bad ones stand alone: a few more batches, never resent
            return [*await self._send(waiters[:half]), *await self._send(waiters[half:])]
        except Exception as exc:
            if not isinstance(exc, SubagentMCPError):
                log.exception("run %s could not send a batch", self._run_id)
            error = exc if isinstance(exc, ModelError) else ModelRequestError(_failure("send the batch", exc))
            for w in waiters:
                w.end(error)
            return []
        entries = [BatchEntry(custom_id=cid, task_id=w.request.label, digest=w.digest) for cid, w in pairs]
        try:
            await self._store.record_batch(self._run_id, batch_id, entries)
        except SubagentMCPError as exc:  # sent but not recorded: cancel it rather than pay for answers we lose
            log.warning("batch %s could not be recorded (%s); cancelling it", batch_id, exc)
            await self._cancel_quietly(batch_id)
            for w in waiters:
                w.end(ModelRequestError(f"the batch could not be recorded in the run database: {exc}"))
            return []
        log.info("run %s sent batch %s with %d request(s)", self._run_id, batch_id, len(pairs))
        batch = _Batch(batch_id, {cid: w.request.model for cid, w in pairs}, dict(pairs))
        self._batches[batch_id] = batch
        return [batch]

    def _attach(self, entry: BatchEntry, waiter: _Waiter, recorded: Sequence[BatchEntry]) -> None:
        """Wait on a batch recorded earlier (by this run before a restart) instead of sending the request again.

        ``recorded``: every request of the batch, so its results are read whole even if it ends before the
        other subtasks it carries have re-attached (they take their outcome from it when they do).
        """
        assert self._tg is not None, "use BatchBackend inside running()"
        batch = self._batches.get(entry.batch_id)
        if batch is None:
            models: dict[str, str | None] = {e.custom_id: None for e in recorded}
            batch = self._batches[entry.batch_id] = _Batch(entry.batch_id, models)
            self._tg.start_soon(self._poll, batch)
            log.info("run %s re-attached to batch %s", self._run_id, entry.batch_id)
        batch.models[entry.custom_id] = waiter.request.model
        batch.waiters[entry.custom_id] = waiter
        if batch.outcomes is not None or batch.failure is not None:  # it ended already: hand this one over too
            self._tg.start_soon(self._deliver, batch)

    async def _poll(self, batch: _Batch) -> None:
        """Poll until the batch ends, read its results, and hand each waiter its own."""
        try:
            while True:  # the API has no push: poll, every poll_s (tiny in tests, ~30 s for real)
                if await self._api.ended(batch.batch_id):
                    break
                await anyio.sleep(self._poll_s)
            batch.outcomes = await self._api.results(batch.batch_id, batch.models)
        except ModelError as exc:  # unread: left in_progress, so a resume polls it again
            batch.failure = exc
        except Exception as exc:  # a bug: fail this batch's calls (left in_progress too), not the whole run
            log.exception("run %s could not follow batch %s", self._run_id, batch.batch_id)
            batch.failure = ModelError(_failure(f"follow batch {batch.batch_id}", exc))
        else:
            try:
                await self._store.end_batch(batch.batch_id, "ended")
            except StoreError as exc:  # only bookkeeping: its requests' results are what matters
                log.warning("batch %s ended but could not be marked so: %s", batch.batch_id, exc)
        await self._deliver(batch)

    async def _deliver(self, batch: _Batch) -> None:
        """Give each waiter its outcome and mark those results taken (one transaction for the batch).

        Results the API could not give for now (unavailable) stay untaken, so a resume polls the batch
        again; results that are unreadable or that the API refuses for good (an unknown or archived batch)
        are taken too, so a resume sends those requests afresh instead of failing on them forever.
        """
        waiting = {cid: w for cid, w in batch.waiters.items() if not w.done.is_set()}
        lost = isinstance(batch.failure, (ModelReplyError, ModelRequestError))  # unreadable, or gone upstream
        if batch.outcomes is not None or lost:
            try:
                with anyio.CancelScope(shield=True):
                    await self._store.consume_batch_requests(batch.batch_id, list(waiting))
            except StoreError as exc:  # the run's own saves will stop it; the answers are still handed over
                log.warning("results of batch %s could not be marked taken: %s", batch.batch_id, exc)
        for cid, w in waiting.items():
            if batch.failure is not None:
                w.end(batch.failure)
            else:
                assert batch.outcomes is not None
                missing = ModelReplyError(f"the results of batch {batch.batch_id} have no line for this request")
                w.end(batch.outcomes.get(cid, missing))

    async def _cancel_quietly(self, batch_id: str) -> None:
        try:
            await self._api.cancel(batch_id)
        except ModelError as exc:
            log.warning("batch %s could not be cancelled: %s", batch_id, exc)


def _failure(what: str, exc: Exception) -> str:
    """What a caller is told of an unexpected error: its kind, not its text (which may quote anything)."""
    if isinstance(exc, SubagentMCPError):
        return str(exc)
    return f"could not {what}: unexpected {type(exc).__name__} (see the server log); resume_run tries again"


async def cancel_run_batches(api: BatchAPI, store: Store, run_id: str) -> list[str]:
    """Cancel ``run_id``'s batches still in flight (cancel_run): what the API had not processed is not billed."""
    cancelled: list[str] = []
    try:
        for batch in await store.run_batches(run_id):
            if batch.status == "in_progress" and batch.consumed < batch.requests:
                try:
                    await api.cancel(batch.batch_id)
                except ModelError as exc:
                    log.warning("batch %s could not be cancelled: %s", batch.batch_id, exc)
                    continue
                await store.end_batch(batch.batch_id, "canceled")
                cancelled.append(batch.batch_id)
    finally:
        await api.aclose()
    return cancelled
