"""What a run that has not ended shows a caller: progress counts, each subtask so far, and a handle to wait on.

Public like ``contracts``: the run tools' output schemas are generated from these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .contracts import Spend, Usage


class RunCounts(BaseModel):
    """How far a run has got: subtasks per state, ``pending`` being those not started yet."""

    total: int = 0
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    running: int = 0
    pending: int = 0


TaskPhase = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
"""Where one subtask of a run not ended yet stands: not started, in flight, or its final status."""


class TaskProgress(BaseModel):
    """One subtask of a run not ended yet: its place in the plan and how far it got (its output comes at the end)."""

    task_id: str
    role: str
    depends_on: list[str] = Field(default_factory=list[str])
    status: TaskPhase
    error: str | None = Field(default=None, description="Why it failed, was skipped or cancelled.")
    started_at_s: float | None = Field(default=None, description="Seconds from the run's start in this server.")
    finished_at_s: float | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0


Phase = Literal["planning", "running", "synthesizing"] | None
"""What a live run is doing: planning (orchestrate only), running subtasks, or synthesizing; None if not live."""


class RunHandle(BaseModel):
    """A run that has not ended (or was interrupted): what it has done so far and what to call next.

    Returned instead of the final result when a tool's ``wait_s`` runs out first; the run goes on in
    the server. ``wait_run(run_id)`` returns the final result once the run ends.
    """

    run_id: str
    status: Literal["running", "interrupted", "cancelled"] = Field(
        description="running: still going in the server; interrupted: its server stopped; cancelled: stopped by "
        "cancel_run before it had a report. resume_run continues an interrupted or cancelled run."
    )
    phase: Phase = Field(
        default=None, description="For a live run: planning (orchestrate only), running subtasks, or synthesizing."
    )
    plan_id: str | None = Field(default=None, description="Null while an orchestration is still planning.")
    counts: RunCounts = Field(default_factory=RunCounts)
    spent: Spend = Field(default_factory=Spend, description="Billed so far: planning and every finished call.")
    elapsed_s: float = Field(default=0.0, description="Seconds since the run started in this server.")
    next: str = Field(description="What to call next, e.g. wait_run(run_id=...).")
    tasks: list[TaskProgress] = Field(
        default_factory=list[TaskProgress],
        description="Every subtask in plan order with its state so far (empty while planning), for a live view.",
    )
    tasks_omitted: int = Field(
        default=0,
        description="Subtasks left off the end of tasks to keep this result within what hosts accept; counts has all.",
    )
