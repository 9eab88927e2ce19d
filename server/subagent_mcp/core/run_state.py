"""What a run shows the outside while and after it runs: progress counts, events, and its live state.

Kept apart from the scheduler so callers that only watch a run (progress, terminal, storage) do not
depend on how it is scheduled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..contracts import RunStatus, SubagentResult, Subtask, TaskStatus
from ..handles import TaskProgress


@dataclass(frozen=True, slots=True)
class Counts:
    """Progress of a run, enough to render "7/12 done, 1 failed"."""

    total: int
    done: int
    running: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int

    def __str__(self) -> str:
        extra = {"running": self.running, "failed": self.failed, "skipped": self.skipped, "cancelled": self.cancelled}
        return ", ".join([f"{self.done}/{self.total} done", *(f"{n} {name}" for name, n in extra.items() if n)])


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted:
    """A subtask's ``run_task`` call is about to begin."""

    task_id: str
    counts: Counts
    at_s: float = 0.0
    """Seconds from the run's start."""
    kind: Literal["task_started"] = "task_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished:
    """A subtask reached its final status (including ``skipped`` and ``cancelled``)."""

    result: SubagentResult
    counts: Counts
    kind: Literal["task_finished"] = "task_finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    """Every subtask has a result; the last event of a run (lost if the host cancels it)."""

    status: RunStatus
    counts: Counts
    kind: Literal["run_finished"] = "run_finished"


ExecutorEvent = TaskStarted | TaskFinished | RunFinished
Interruption = Literal["timeout", "cancelled", "error"]
"""What cut a run short: its own timeout, a stop (host cancellation), or an internal error (a bug)."""
OnEvent = Callable[[ExecutorEvent], Awaitable[None] | None]


@dataclass
class RunState:
    """Live state of one run; pass one in to read it after cancelling the caller's scope."""

    task_ids: list[str] = field(default_factory=list[str])
    results: dict[str, SubagentResult] = field(default_factory=dict[str, SubagentResult])
    running: dict[str, float] = field(default_factory=dict[str, float])
    """In-flight task ids -> start offset (seconds from run start)."""
    started_at: float | None = None
    finished_at: float | None = None
    interrupted: Interruption | None = None
    _tally: dict[TaskStatus, int] = field(default_factory=dict[TaskStatus, int], repr=False)

    @property
    def status(self) -> RunStatus:
        """cancelled if any task was; else succeeded (all) / partial (some) / failed (none succeeded, or a bug)."""
        if self._tally.get("cancelled", 0):
            return "cancelled"
        if self.interrupted == "error":
            return "failed"
        succeeded = self._tally.get("succeeded", 0)
        if succeeded == len(self.task_ids):
            return "succeeded"
        return "partial" if succeeded else "failed"

    @property
    def makespan_s(self) -> float:
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return self.finished_at - self.started_at

    def counts(self) -> Counts:
        t = self._tally.get
        done, running = len(self.results), len(self.running)
        return Counts(
            len(self.task_ids), done, running, t("succeeded", 0), t("failed", 0), t("skipped", 0), t("cancelled", 0)
        )

    def record(self, result: SubagentResult) -> None:
        """Store a final result and keep the per-status tally (O(1), so counts stay cheap)."""
        previous = self.results.get(result.task_id)
        if previous is not None:
            self._tally[previous.status] -= 1
        self.results[result.task_id] = result
        self._tally[result.status] = self._tally.get(result.status, 0) + 1


def progress_of(
    subtasks: Sequence[Subtask], results: Mapping[str, SubagentResult], running: Mapping[str, float] | None = None
) -> list[TaskProgress]:
    """Each subtask's state so far, in plan order: its result, else running since its start offset, else pending."""
    progress: list[TaskProgress] = []
    for s in subtasks:
        r = results.get(s.id)
        if r is not None:
            progress.append(
                TaskProgress(task_id=s.id, role=s.role, depends_on=s.depends_on, status=r.status, error=r.error,
                             started_at_s=r.started_at_s, finished_at_s=r.finished_at_s, usage=r.usage,
                             cost_usd=r.cost_usd)
            )  # fmt: skip
        elif running is not None and s.id in running:
            progress.append(TaskProgress(task_id=s.id, role=s.role, depends_on=s.depends_on, status="running",
                                         started_at_s=running[s.id]))  # fmt: skip
        else:
            progress.append(TaskProgress(task_id=s.id, role=s.role, depends_on=s.depends_on, status="pending"))
    return progress
