"""The store's public types: run states, the rows it hands back, and the one error it raises (with its wording)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..contracts import RunReport, Spend, SubagentResult, Synthesis, TaskStatus, Usage
from ..errors import SubagentMCPError
from ..handles import RunHandle
from ..run_options import RunOptions

DB_PATH_ENV = "SUBAGENT_MCP_DB_PATH"
DB_URL_ENV = "SUBAGENT_MCP_DB_URL"
MOVE_ASIDE = f"Move the file aside (subagent-mcp never deletes or replaces it), or set {DB_PATH_ENV} to another file."
FIX_PERMISSIONS = f"Fix its permissions, or set {DB_PATH_ENV} to another file."

RunState = Literal["running", "interrupted", "succeeded", "partial", "failed", "cancelled"]
"""A stored run's status: ``running`` while a server holds its lease, ``interrupted`` once that server is gone
(its lease expired) or stopped it, else the finished run's ``RunStatus``."""


class StoreError(SubagentMCPError):
    """The run database cannot be opened or written; the message names the file and what to do."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def refuse(path: object, problem: str, remedy: str = MOVE_ASIDE) -> StoreError:
    """A ``StoreError`` that says which file, what is wrong with it, and what the user can do."""
    return StoreError(f"The run database at {path} {problem}. {remedy}", path=str(path))


class RunSummary(BaseModel):
    """One line of ``list_runs``: enough to pick a run to show or resume."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    plan_id: str
    task: str = Field(description="The plan's task, shortened to one line.")
    status: RunState
    created_at: datetime
    finished_at: datetime | None
    counts: dict[TaskStatus, int] = Field(description="Stored task results per status; tasks not yet run are absent.")
    cost_usd: float = Field(description="Spent so far on subtasks, every attempt included.")
    total_cost_usd: float = Field(description="Planning, every subtask attempt and every synthesis, together.")
    live: RunHandle | None = Field(
        default=None, description="For a run going on in this server: its phase, progress and spend so far."
    )


class RunRecord(BaseModel):
    """A stored run: its row, the latest result of each task, and the usage of every attempt."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    plan_id: str
    status: RunState
    pid: int = Field(description="The process that owns (or last owned) the run, on the owner's machine.")
    owner: str | None = Field(default=None, description="The server (host:pid:nonce) holding the run's lease.")
    lease_until: datetime | None = Field(
        default=None, description="Until when the owner's last heartbeat holds the run; past it, the run is free."
    )
    cancel_requested: bool = Field(default=False, description="Another server asked the owner to cancel the run.")
    concluded: bool = Field(
        default=False, description="A synthesis was stored (or failed) since the run last finished."
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    options: RunOptions
    report: RunReport | None = Field(description="Set by ``finish_run``; null while running or if interrupted.")
    results: dict[str, SubagentResult] = Field(description="The latest result per task id, in the order first saved.")
    usage: Usage = Field(description="Subtasks' usage summed over every attempt, including tasks re-run later.")
    cost_usd: float
    planning: Spend = Field(default_factory=Spend, description="What planning cost, for a run orchestrate made.")
    synthesis: Synthesis | None = Field(
        default=None, description="The latest synthesis, if made since the run last finished (else stale or none)."
    )
    synthesis_spend: Spend = Field(default_factory=Spend, description="Every synthesis of this run, failed ones too.")

    @property
    def total(self) -> Spend:
        """Planning, every subtask attempt and every synthesis: what the run cost in all."""
        return self.planning + Spend(usage=self.usage, cost_usd=self.cost_usd) + self.synthesis_spend

    def lease_live(self, now: datetime) -> bool:
        """Whether a server still holds this run (its lease has not expired at ``now``)."""
        return self.lease_until is not None and self.lease_until > now

    def succeeded_ids(self) -> set[str]:
        """Task ids whose latest result succeeded: what a resume keeps instead of re-running."""
        return {task_id for task_id, r in self.results.items() if r.status == "succeeded"}


class Heartbeat(BaseModel):
    """What a server's heartbeat learns about the runs it owns: which to cancel, which another server took."""

    model_config = ConfigDict(frozen=True)

    cancel: list[str] = Field(default_factory=list[str], description="Runs another server asked this one to cancel.")
    lost: list[str] = Field(
        default_factory=list[str], description="Runs this server runs that another server owns now."
    )
