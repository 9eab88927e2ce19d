"""How a run was asked to run: stored with the run (the store reads it back typed), so a resume runs the same way."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .contracts import Spend


class RunOptions(BaseModel):
    """How a run was asked to run; stored with it so a resume runs the same way."""

    model_config = ConfigDict(extra="ignore")

    max_concurrency: int
    task_timeout_s: float
    run_timeout_s: float
    max_cost_usd: float | None = None
    max_total_tokens: int | None = None
    prior_spend: Spend = Field(default_factory=Spend)
    """Spent before the run toward its ceilings (an orchestration's planning); kept so a resume counts it."""
    held_back: Spend = Field(default_factory=Spend)
    """Kept free for the synthesis that follows (an orchestration), so the subtasks cannot use it up."""
    orchestrated: bool = False
    """Made by an orchestration (orchestrate, ``subagent-mcp run``): its result includes a synthesis."""
    batch: bool = False
    """Batch mode: subtask calls go through the Message Batches API at half price (``batching.py``)."""
    demo: bool = False
    """Answered by the demo backend (scripted outputs, nothing billed): resumed only in demo mode, and vice versa."""
