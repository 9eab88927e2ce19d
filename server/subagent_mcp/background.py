"""Runs owned by the server, not by the tool call that started them.

Hosts cut long tool calls off (Claude Desktop after ~60 s), so a run started by ``execute_plan``,
``orchestrate`` or ``resume_run`` goes on in a task group the service owns for its lifetime. Any
number of callers wait on it for as long as each likes, watch its progress, or stop it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import TaskGroup
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext

from .contracts import OrchestrateResult, Plan, RunReport, Spend, SubagentResult, Subtask
from .core.run_state import Counts, ExecutorEvent, TaskFinished, TaskStarted, progress_of
from .errors import InputError, SubagentMCPError
from .handles import RunCounts, RunHandle
from .telemetry import Telemetry, run_ended

log = logging.getLogger(__name__)

Outcome = RunReport | OrchestrateResult
Kind = Literal["execute", "orchestrate", "resume"]
Phase = Literal["planning", "running", "synthesizing"]
StopReason = Literal["cancel", "shutdown"]

Level = Literal["info", "warning"]
Watcher = Callable[[int, int | None, str, Level], Awaitable[None]]
"""Told of progress as (done, total or None while unknown, message, log level), e.g. a call's progress reporter."""

HEARTBEAT_S = 15.0
"""How often a waiting caller hears from a run that has nothing new to say (hosts drop silent calls)."""

SHUTDOWN_GRACE_S = 10.0
"""How long shutdown waits for stopped runs to store what they have."""

KEEP_FINISHED = 200
"""Finished runs remembered in memory (older ones are read back from the store)."""


_driven: ContextVar[LiveRun | None] = ContextVar("driven_run", default=None)


MAX_SHOWN_ID = 100
"""A run or plan id a caller sent is echoed at most this long in a message (ids are free text from outside)."""


def shown_id(run_id: str) -> str:
    """``run_id`` quoted for a message, cut to ``MAX_SHOWN_ID`` characters (with an ellipsis)."""
    return repr(run_id if len(run_id) <= MAX_SHOWN_ID else run_id[:MAX_SHOWN_ID] + "…")


def still_running(run_id: str) -> InputError:
    """The refusal to take over or start again a run this server is running."""
    return InputError(f"run {shown_id(run_id)} is still running in this server; wait_run or cancel_run it first")


CANCELLED_WHILE_PLANNING = (
    "it was cancelled while planning; nothing ran, so there is nothing to resume or synthesize. "
    "Call orchestrate again to start it anew."
)
"""What every tool and the run resource say of a run stopped before its plan existed (nothing of it is stored)."""


def stopped_while_planning(run: LiveRun | None) -> bool:
    """Whether ``run`` (this server's, if remembered) was stopped while planning, so no run of its id is stored."""
    return run is not None and run.done.is_set() and run.phase == "planning" and run.stopped is not None


def driven_run() -> LiveRun | None:
    """The run whose job is calling (set for the job's whole task by ``RunRegistry``), or None outside one."""
    return _driven.get()


class RunStopped(SubagentMCPError):
    """A run was cancelled or interrupted before it could return its result."""


@dataclass(eq=False)
class Inbox:
    """One waiting caller's queue of progress steps, filled by the run and drained by the caller."""

    items: deque[tuple[int, int | None, str, Level]] = field(
        default_factory=lambda: deque[tuple[int, int | None, str, Level]]()
    )
    wake: anyio.Event = field(default_factory=anyio.Event)


@dataclass(eq=False)
class LiveRun:
    """One run going on in this server: its phase, progress, spend so far, and in the end its outcome."""

    run_id: str
    kind: Kind
    phase: Phase = "running"
    plan_id: str | None = None
    counts: Counts | None = None
    spent: Spend = field(default_factory=Spend)
    started: float = field(default_factory=time.monotonic)
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None
    error: SubagentMCPError | None = None
    stopped: StopReason | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    inboxes: list[Inbox] = field(default_factory=lambda: list[Inbox]())
    last: tuple[int, int | None, str, Level] = (0, None, "starting", "info")
    subtasks: list[Subtask] = field(default_factory=list[Subtask])
    results: dict[str, SubagentResult] = field(default_factory=dict[str, SubagentResult])
    running: dict[str, float] = field(default_factory=dict[str, float])
    """In-flight task ids -> start offset (seconds from the run's start), for the handle's ``tasks``."""
    refresh: Callable[[], Awaitable[None]] | None = None
    """Brings ``counts`` and ``results`` up to date from where the run executes (a Temporal workflow's query)."""
    detached: bool = False
    """The run goes on elsewhere (on Temporal's workers) after this server stopped following it."""
    span: SpanContext | None = None
    """The run's trace span, once it started (``wait_run`` calls link to it)."""

    @property
    def steps(self) -> tuple[int, int]:
        """Extra progress steps around the subtasks: (before, after); an orchestration plans and synthesizes."""
        return (1, 1) if self.kind == "orchestrate" else (0, 0)

    def expect(self, plan: Plan, kept: Mapping[str, SubagentResult] | None = None) -> None:
        """Show ``plan``'s subtasks (``kept`` succeeded from before) until the first event says more."""
        kept = kept or {}
        self.plan_id, self.subtasks, self.results = plan.plan_id, list(plan.subtasks), dict(kept)
        self.counts = Counts(len(plan.subtasks), len(kept), 0, len(kept), 0, 0, 0)

    def note_spend(self, spend: Spend) -> None:
        """Add a finished call's (or the planner's) spend to what this run shows as spent so far."""
        self.spent += spend

    async def enter(self, phase: Phase, message: str, *, ended: bool = False) -> None:
        """Move to ``phase`` and tell every watcher (``ended``: its last step is done too)."""
        self.phase = phase
        before, after = self.steps
        counts = self.counts
        if phase == "planning":
            self._tell(0, None, message)
        elif counts is not None:
            total = counts.total + before + after
            done = counts.done + before if phase == "running" else total - (0 if ended else after)
            self._tell(done, total, message)

    async def on_event(self, event: ExecutorEvent) -> None:
        """The executor's events, as progress for every watcher."""
        self.counts = counts = event.counts
        before, after = self.steps
        total, done = counts.total + before + after, counts.done + before
        level: Level = "info"
        if isinstance(event, TaskStarted):
            self.running[event.task_id] = event.at_s
            message = f"started {event.task_id} ({counts})"
        elif isinstance(event, TaskFinished):
            r = self.results[event.result.task_id] = event.result
            self.running.pop(r.task_id, None)
            why = f": {r.error}" if r.error and r.status != "succeeded" else ""
            message = f"{r.task_id} {r.status}{why} ({counts})"
            level = "warning" if r.status == "failed" else "info"
        else:
            message = f"run {event.status} ({counts})"
        self._tell(done, total, message, level)

    def _tell(self, done: int, total: int | None, message: str, level: Level = "info") -> None:
        """Queue a step for every waiting caller; never awaits, so a slow caller cannot hold the run up."""
        self.last = (done, total, message, level)
        for inbox in self.inboxes:
            inbox.items.append(self.last)
            inbox.wake.set()

    def handle(self, next_step: str) -> RunHandle:
        """What this run has done so far, as a handle a caller can come back with."""
        counts = self.counts
        progress = RunCounts()
        if counts is not None:
            pending = counts.total - counts.done - counts.running
            progress = RunCounts(
                total=counts.total,
                done=counts.done,
                succeeded=counts.succeeded,
                failed=counts.failed,
                skipped=counts.skipped,
                cancelled=counts.cancelled,
                running=counts.running,
                pending=max(pending, 0),
            )
        return RunHandle(
            run_id=self.run_id,
            status="cancelled" if self.stopped == "cancel" else "running",
            phase=self.phase,
            plan_id=self.plan_id,
            counts=progress,
            spent=self.spent,
            elapsed_s=round(time.monotonic() - self.started, 3),
            next=next_step,
            tasks=progress_of(self.subtasks, self.results, self.running),
        )


class RunRegistry:
    """The runs of one server process: started in its task group, found by id, stopped on shutdown."""

    def __init__(self, task_group: TaskGroup, telemetry: Telemetry | None = None) -> None:
        self._tg = task_group
        self._telemetry = telemetry or Telemetry.of()
        self._runs: OrderedDict[str, LiveRun] = OrderedDict()
        self._claimed: set[str] = set()

    def get(self, run_id: str) -> LiveRun | None:
        return self._runs.get(run_id)

    def busy(self, run_id: str) -> LiveRun | None:
        """The run of that id going on in this server, if one is."""
        run = self._runs.get(run_id)
        return run if run is not None and not run.done.is_set() else None

    @contextmanager
    def claim(self, run_id: str) -> Generator[None]:
        """Hold ``run_id`` for one take-over, from before its first await until it was launched or given up.

        A second take-over of the same run meanwhile (two resume_run calls at once) is refused at once, so a
        run never executes twice in one server.

        Raises:
            InputError: the run is going on here, or another call is taking it over.
        """
        if run_id in self._claimed or self.busy(run_id) is not None:
            raise still_running(run_id)
        self._claimed.add(run_id)
        try:
            yield
        finally:
            self._claimed.discard(run_id)

    def live(self) -> list[LiveRun]:
        """Runs still going, oldest first."""
        return [r for r in self._runs.values() if not r.done.is_set()]

    def launch(self, run: LiveRun, job: Callable[[], Awaitable[Outcome]]) -> LiveRun:
        """Start ``job`` as ``run`` in the server's task group; it no longer depends on any caller.

        Its trace span is a child of the caller's current span (the ``tools/call`` that started it),
        taken here, not from the task group, which belongs to the server.

        Raises:
            InputError: a run of that id is still going on here (it is never orphaned by a second one).
        """
        if self.busy(run.run_id) is not None:
            raise still_running(run.run_id)
        self._runs[run.run_id] = run
        self._forget_old()
        self._tg.start_soon(self._drive, run, job, otel_context.get_current(), name=f"run {run.run_id}")
        return run

    async def _drive(self, run: LiveRun, job: Callable[[], Awaitable[Outcome]], caller: otel_context.Context) -> None:
        _driven.set(run)
        with self._telemetry.workflow(run.kind, run.run_id, caller) as span:
            run.span = span.get_span_context()
            await self._settle(run, job)
            run_ended(span, run.outcome, run.stopped, run.error)
        run.done.set()
        for inbox in run.inboxes:
            inbox.wake.set()

    async def _settle(self, run: LiveRun, job: Callable[[], Awaitable[Outcome]]) -> None:
        """Run ``job`` to its outcome or error; a stop or a bug becomes an error too (the run never raises)."""
        with run.scope:
            try:
                run.outcome = await job()
            except SubagentMCPError as exc:
                run.error = exc
            except Exception as exc:  # a bug: say so to whoever waits, keep the server up
                log.exception("run %s failed unexpectedly", run.run_id)
                run.error = SubagentMCPError(f"run {run.run_id} failed unexpectedly ({type(exc).__name__}); see logs")
        if run.outcome is None and run.error is None:
            what = "cancelled" if run.stopped == "cancel" else "interrupted by the server's shutdown"
            run.error = RunStopped(f"run {run.run_id} was {what} during {run.phase}")

    async def wait(self, run: LiveRun, wait_s: float, watcher: Watcher | None = None) -> bool:
        """Wait up to ``wait_s`` for ``run`` to end, telling ``watcher`` of progress; True if it ended.

        While nothing happens the watcher hears the latest progress again every ``HEARTBEAT_S``, so
        hosts that drop silent calls keep this one. Cancelling the wait leaves the run alone.
        """
        inbox = Inbox()
        run.inboxes.append(inbox)
        try:
            if run.refresh is not None and not run.done.is_set():
                await run.refresh()
            with anyio.move_on_after(wait_s):
                while True:
                    while inbox.items:  # told in the caller's own task: a slow client delays only itself
                        step = inbox.items.popleft()
                        if watcher is not None:
                            await watcher(*step)
                    if run.done.is_set():
                        break
                    inbox.wake = anyio.Event()
                    with anyio.move_on_after(HEARTBEAT_S) as beat:
                        await inbox.wake.wait()
                    if beat.cancelled_caught and watcher is not None:
                        await watcher(*run.last)
            return run.done.is_set()
        finally:
            run.inboxes.remove(inbox)

    async def stop(self, run: LiveRun, reason: StopReason = "cancel") -> None:
        """Cancel ``run``'s in-flight calls and wait until it has stored what it has (never interrupted)."""
        if not run.done.is_set():
            run.stopped = reason
            run.scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE_S):
            await run.done.wait()

    async def shutdown(self) -> list[LiveRun]:
        """Stop every live run (as at a shutdown) and return those that were cut short."""
        cut = self.live()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for run in cut:
                    tg.start_soon(self.stop, run, "shutdown")
        return cut

    def _forget_old(self) -> None:
        finished = [run_id for run_id, r in self._runs.items() if r.done.is_set()]
        for run_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._runs[run_id]
