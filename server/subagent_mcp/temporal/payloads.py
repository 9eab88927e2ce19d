"""What crosses Temporal's wire (and so its history): typed, and never holding the API key or HTTP token."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..contracts import CompletionRequest, JsonObject, Plan, PlanEstimate, RunStatus, Spend, SubagentResult, Usage
from ..roles import Role
from ..run_options import RunOptions
from ..settings import Settings

SECRETS = frozenset(name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation))
"""Settings that never go into a workflow's input (the API key, the HTTP token, the database URL with its
password): workers read their own from their environment."""


def public_settings(settings: Settings) -> JsonObject:
    """The settings a workflow needs to build requests (models, prices, limits), without any secret."""
    return settings.model_dump(mode="json", exclude=set(SECRETS))


class RunInput(BaseModel):
    """Everything a run's workflow needs, fixed when it starts, so its replay is deterministic."""

    run_id: str
    plan: Plan
    options: RunOptions
    estimate: PlanEstimate | None = None
    kept: dict[str, SubagentResult] = Field(default_factory=dict[str, SubagentResult])
    """Succeeded results of earlier attempts (a resume): never run again."""
    spent: Spend = Field(default_factory=Spend)
    """What earlier attempts of the run spent, toward its ceilings."""
    settings: JsonObject
    roles: dict[str, Role]


class CallInput(BaseModel):
    """One model call: the request, for the run and subtask it belongs to."""

    run_id: str
    request: CompletionRequest


class CallFailure(BaseModel):
    """A model call's failure as the workflow rebuilds it (the activity's ``ApplicationError`` details)."""

    kind: str
    usage: Usage = Field(default_factory=Usage)
    attempts: int = 1
    model: str | None = None
    status_code: int | None = None
    request_id: str | None = None


class LoggedCall(BaseModel):
    """A finished call's model, usage and cost, logged with its task's result."""

    model: str
    usage: Usage
    cost_usd: float


class SaveInput(BaseModel):
    """A subtask's final result and the calls made for it, committed in one activity."""

    run_id: str
    result: SubagentResult
    calls: list[LoggedCall] = Field(default_factory=list[LoggedCall])


class FinishInput(BaseModel):
    """The run's end: its results in plan order, recorded with usage and cost as the store logged them."""

    run_id: str
    plan_id: str
    status: RunStatus
    results: list[SubagentResult]
    makespan_s: float
    estimate: PlanEstimate | None = None
    graph: dict[str, list[str]]
    options: RunOptions | None = None
    """The ceilings it ran under, so the report says if it billed past them (None from older workflows)."""


class Progress(BaseModel):
    """A run's progress, as the workflow's ``progress`` query answers it."""

    total: int
    running: dict[str, float] = Field(default_factory=dict[str, float])
    results: dict[str, SubagentResult] = Field(default_factory=dict[str, SubagentResult])
    spent: Spend = Field(default_factory=Spend)
    """Every finished call of this workflow, priced (earlier attempts of the run not included)."""
    status: RunStatus | None = None
    """Set once the run has ended."""
