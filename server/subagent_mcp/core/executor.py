"""Event-driven DAG executor: each subtask starts the moment its last dependency succeeds.

Failures are data: a failed, raising or timed-out task becomes a ``failed`` result, its transitive
dependents become ``skipped``, and independent branches run on. Pure core: no network, disk or MCP;
the caller supplies ``run_task`` (a model call, a script, a sleep in benchmarks).
"""

from __future__ import annotations

import heapq
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from ..contracts import Plan, SubagentResult, Subtask, TaskStatus
from .dag_checks import check_subtasks
from .graph import dependents_of, downstream_lengths
from .run_state import ExecutorEvent, Interruption, OnEvent, RunFinished, RunState, TaskFinished, TaskStarted

logger = logging.getLogger(__name__)

RunTask = Callable[[Subtask, Mapping[str, SubagentResult]], Awaitable[SubagentResult]]
"""Runs one subtask given its dependencies' results by id; may return a failed result or raise."""

Priority = Literal["critical_path", "fifo"]
Clock = Callable[[], float]


async def execute(
    plan: Plan,
    run_task: RunTask,
    *,
    max_concurrency: int | None = None,
    task_timeout_s: float | None = None,
    run_timeout_s: float | None = None,
    priority: Priority = "critical_path",
    weights: Mapping[str, float] | None = None,
    on_event: OnEvent | None = None,
    completed: Mapping[str, SubagentResult] | None = None,
    state: RunState | None = None,
    clock: Clock = time.monotonic,
) -> RunState:
    """Run ``plan`` to the end and return its state; every subtask ends with exactly one result.

    ``completed`` seeds results from an earlier run: the ``succeeded`` ones are not run again and
    satisfy their dependents; others are run. ``weights`` are expected durations (any one unit, for
    every subtask): the critical-path priority then ranks by the heaviest remaining path in them,
    not by its count of tasks. Host cancellation marks unfinished tasks ``cancelled``
    in ``state`` and propagates; an error escaping the run (a bug) fails them (``skipped`` if never
    started) and propagates. ``on_event`` gets events in order on its own task, so a slow one
    delays only this function's return, never the scheduling.

    Raises:
        ValueError: the plan is not a valid DAG, or an argument is out of range.
    """
    check_subtasks(plan.subtasks)
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1 (or None for unbounded), got {max_concurrency}")
    for name, value in (("task_timeout_s", task_timeout_s), ("run_timeout_s", run_timeout_s)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive (or None for no limit), got {value}")
    ids = {s.id for s in plan.subtasks}
    unknown = sorted(set(completed or ()) - ids)
    if unknown:
        raise ValueError(f"completed results name unknown subtask ids: {', '.join(unknown)}")
    if weights is not None:
        _check_weights(weights, ids)
    run = _Run(plan, run_task, (max_concurrency, task_timeout_s), (priority, weights), clock)
    run.state = state or run.state
    if on_event is None:
        await run.run(completed or {}, run_timeout_s)
        return run.state
    run.events = mailbox = _Mailbox()
    async with anyio.create_task_group() as delivery:
        delivery.start_soon(mailbox.deliver, on_event)
        try:
            await run.run(completed or {}, run_timeout_s)
        finally:
            mailbox.close()
    return run.state


class _Mailbox:
    """Unbounded, ordered event queue drained in batches by one task, so events cost no loop turn each."""

    def __init__(self) -> None:
        self.queue: deque[ExecutorEvent] = deque()
        self.wake = anyio.Event()
        self.closed = False

    def put(self, event: ExecutorEvent) -> None:
        self.queue.append(event)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def deliver(self, on_event: OnEvent) -> None:
        """Hand events to ``on_event`` in order; its errors are logged, never raised into the run."""
        while True:
            while self.queue:
                event = self.queue.popleft()
                try:
                    outcome = on_event(event)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:
                    logger.exception("on_event raised on a %s event; the run continues", event.kind)
            if self.closed:
                return
            self.wake = anyio.Event()
            await self.wake.wait()


class _Run:
    """One execution: ready heap, dependency counters, in-flight count, all mutated on one event loop."""

    def __init__(
        self,
        plan: Plan,
        run_task: RunTask,
        limits: tuple[int | None, float | None],
        order: tuple[Priority, Mapping[str, float] | None],
        clock: Clock,
    ) -> None:
        self.subtasks = {s.id: s for s in plan.subtasks}
        self.graph = plan.graph()
        self.dependents = dependents_of(self.graph)
        self.run_task, (self.cap, self.task_timeout_s), self.clock = run_task, limits, clock
        self.priority, weights = order
        self.rank: dict[str, float] = {}
        if self.priority == "critical_path":
            lengths = downstream_lengths(self.graph, weights)
            self.rank = {task_id: -lengths[task_id] for task_id in self.graph}
        self.order = {task_id: i for i, task_id in enumerate(self.graph)}
        self.state = RunState()
        self.events: _Mailbox | None = None
        self.ready: list[tuple[float, int, str]] = []
        self.waiting: dict[str, int] = {}
        self.busy = 0  # workers holding a slot (running a task, or woken with one)
        self.parked: list[_Parked] = []
        self.seq = 0
        self.t0 = 0.0
        self.tg: TaskGroup | None = None

    async def run(self, completed: Mapping[str, SubagentResult], run_timeout_s: float | None) -> None:
        state = self.state
        state.task_ids = list(self.graph)
        state.results.clear()
        state.running.clear()
        state._tally.clear()
        state.interrupted = None
        state.finished_at = None
        state.started_at = self.t0 = self.clock()
        seeded = {tid for tid, r in completed.items() if r.status == "succeeded"}
        for tid in seeded:
            state.record(completed[tid])
        for tid, deps in self.graph.items():
            if tid not in seeded:
                self.waiting[tid] = len({d for d in deps if d not in seeded})
                if not self.waiting[tid]:
                    self._push(tid)
        try:
            with anyio.move_on_after(run_timeout_s) as run_scope:
                async with anyio.create_task_group() as tg:
                    self.tg = tg
                    self._launch()
        except Exception as exc:  # a bug (here, or escaping run_task's handling): a failure, not a stop
            self._close("error", f"an internal error stopped the run ({type(root_error(exc)).__name__})")
            raise
        except BaseException:
            self._close("cancelled", "run cancelled")
            raise
        if run_scope.cancelled_caught:
            self._close("timeout", f"the run's timeout_s ({run_timeout_s:g} s) ran out")
        else:
            self._close(None, "")

    def _push(self, task_id: str) -> None:
        if self.priority == "critical_path":
            heapq.heappush(self.ready, (self.rank[task_id], self.order[task_id], task_id))
        else:
            self.seq += 1
            heapq.heappush(self.ready, (0.0, self.seq, task_id))

    def _launch(self) -> None:
        """Hand ready tasks (best first) to parked workers, or spawn workers, while slots are free."""
        assert self.tg is not None
        while self.ready and (self.cap is None or self.busy < self.cap):
            task_id = heapq.heappop(self.ready)[2]
            self.busy += 1
            if self.parked:
                slot = self.parked.pop()
                slot.task_id = task_id
                slot.wake.set()
            else:
                self.tg.start_soon(self._worker, task_id)

    async def _worker(self, task_id: str) -> None:
        """Run tasks until the run is over, parking when none is ready: a wake-up costs less than a spawn."""
        while True:
            self._finish(await self._node(task_id))
            if self.ready:
                task_id = heapq.heappop(self.ready)[2]
                self._launch()
                continue
            self.busy -= 1
            if not self.busy:  # nothing running and nothing ready: every task has its result
                for slot in self.parked:
                    slot.wake.set()
                return
            slot = _Parked()
            self.parked.append(slot)
            await slot.wake.wait()
            if slot.task_id is None:
                return
            task_id = slot.task_id

    async def _node(self, task_id: str) -> SubagentResult:
        """Run one subtask; every Exception and timeout becomes a failed result, cancellation propagates."""
        subtask = self.subtasks[task_id]
        state = self.state
        started = self.clock() - self.t0
        state.running[task_id] = started
        if self.events is not None:
            self._emit(TaskStarted(task_id=task_id, counts=state.counts(), at_s=started))
        deps = {d: state.results[d] for d in subtask.depends_on}
        result: SubagentResult | None = None
        try:
            if self.task_timeout_s is None:
                result = await self.run_task(subtask, deps)
            else:
                with anyio.move_on_after(self.task_timeout_s):
                    result = await self.run_task(subtask, deps)
                if result is None:  # the deadline cancelled the call
                    result = _result(subtask, "failed", f"timed out after {self.task_timeout_s} s")
        except Exception as exc:
            result = _result(subtask, "failed", f"raised {type(exc).__name__}: {exc}")
        finished = self.clock() - self.t0
        del state.running[task_id]
        timing = {"started_at_s": started, "finished_at_s": finished, "duration_s": finished - started}
        return result.model_copy(update={"task_id": task_id, **timing})

    def _finish(self, result: SubagentResult) -> None:
        """Record a result, then release dependents (on success) or skip all descendants (otherwise)."""
        self._record(result)
        if result.status == "succeeded":
            for child in self.dependents[result.task_id]:
                left = self.waiting.get(child)
                if left is not None:
                    self.waiting[child] = left - 1
                    if left == 1:
                        self._push(child)
        else:
            self._skip_descendants(result)

    def _skip_descendants(self, failed: SubagentResult) -> None:
        verb = "failed" if failed.status == "failed" else f"was {failed.status}"
        reason = f"depends on '{failed.task_id}', which {verb}"  # the status already says "skipped"
        at = self.clock() - self.t0
        stack = list(self.dependents[failed.task_id])
        while stack:
            task_id = stack.pop()
            if task_id in self.state.results:
                continue  # already skipped via another path, or seeded as succeeded
            self.waiting.pop(task_id, None)
            self._record(_result(self.subtasks[task_id], "skipped", reason, at))
            stack.extend(self.dependents[task_id])

    def _record(self, result: SubagentResult) -> None:
        self.state.record(result)
        if self.events is not None:
            self._emit(TaskFinished(result=result, counts=self.state.counts()))

    def _close(self, interrupted: Interruption | None, reason: str) -> None:
        """Close every unfinished task, synchronously (so it works while cancelled): ``cancelled`` on a stop; on
        the run's own timeout or an internal error (a failure to finish, not a stop) ``failed`` in flight,
        ``skipped`` if never started."""
        state = self.state
        now = self.clock() - self.t0
        unfinished = [task_id for task_id in state.task_ids if task_id not in state.results]
        for task_id in unfinished:
            started = state.running.pop(task_id, None)
            status: TaskStatus = "cancelled"
            why = reason
            if interrupted in ("timeout", "error"):
                cut = f"timed out: {reason}" if interrupted == "timeout" else reason
                status, why = ("failed", cut) if started is not None else ("skipped", f"not started: {reason}")
            self._record(_result(self.subtasks[task_id], status, why, now, started))
        self.ready.clear()
        self.waiting.clear()
        state.running.clear()
        # a stop after the last result cut nothing short; a bug after it still failed the run
        state.interrupted = interrupted if unfinished or interrupted == "error" else None
        state.finished_at = self.clock()
        if self.events is not None:
            self._emit(RunFinished(status=state.status, counts=state.counts()))

    def _emit(self, event: ExecutorEvent) -> None:
        assert self.events is not None
        self.events.put(event)


@dataclass(slots=True)
class _Parked:
    """An idle worker waiting for a task (``task_id`` stays None when the run is over)."""

    wake: anyio.Event = field(default_factory=anyio.Event)
    task_id: str | None = None


def root_error(exc: BaseException) -> BaseException:
    """The first error inside an exception group (a task group wraps what its tasks raise), else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _check_weights(weights: Mapping[str, float], ids: set[str]) -> None:
    """Weights must cover exactly the plan's subtasks, each a positive finite number."""
    missing, unknown = sorted(ids - set(weights)), sorted(set(weights) - ids)
    if missing:
        raise ValueError(f"weights must give every subtask an expected duration; missing: {', '.join(missing)}")
    if unknown:
        raise ValueError(f"weights name unknown subtask ids: {', '.join(unknown)}")
    bad = sorted(task_id for task_id, w in weights.items() if not (0 < w < math.inf))
    if bad:
        raise ValueError(f"weights must be positive and finite: {', '.join(f'{t}={weights[t]}' for t in bad)}")


def _result(
    subtask: Subtask, status: TaskStatus, error: str, finished: float | None = None, started: float | None = None
) -> SubagentResult:
    """A result the executor decides itself: failed, skipped, or cancelled (``started`` if it was in flight)."""
    duration = 0.0 if started is None or finished is None else finished - started
    result = SubagentResult(task_id=subtask.id, role=subtask.role, status=status, error=error, duration_s=duration)
    result.started_at_s, result.finished_at_s = started, finished
    return result
