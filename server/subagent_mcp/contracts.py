"""The typed contracts every layer speaks: plans, results, usage, and model requests.

These models are public: the MCP tools' input and output schemas are generated from them, and
clients script against their field names. Change them as you would change an API.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .core.dag_checks import HARD_MAX_SUBTASKS, check_subtasks

TaskStatus = Literal["succeeded", "failed", "skipped", "cancelled"]
"""How one subtask ended. ``skipped`` means it never ran (an upstream failed, or a budget ran out)."""

RunStatus = Literal["succeeded", "partial", "failed", "cancelled"]
"""How a whole run ended: every task succeeded / some did / none did, or an internal error stopped it / the run
was cancelled."""

SubtaskTier = Literal["fast", "balanced", "deep"]
"""How hard a subtask is, so it runs on the configured fast, strong or deep model (``Settings.model_for_role``)."""

SUBTASK_TIERS: tuple[SubtaskTier, ...] = ("fast", "balanced", "deep")
"""The tiers from cheapest to strongest: the planner's schema offers them, escalation climbs them."""

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
Slug = Annotated[str, Field(pattern=SLUG_PATTERN, description="Short lowercase id: letters, digits, - and _.")]

MAX_PLAN_ID_CHARS = 100
PLAN_ID = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{MAX_PLAN_ID_CHARS - 1}}}")
"""A plan id is also a resource URI segment and a file-name-like key: a safe alphabet, no path tricks."""

MAX_EXPECTED_OUTPUT_TOKENS = 128_000
"""The largest output a subtask may be expected to write (the biggest max_tokens current models take)."""

DEFAULT_FETCH_CONTENT_TOKENS = 10_000
"""web_fetch's ``max_content_tokens`` unless set (``SUBAGENT_MCP_WEB_FETCH_MAX_CONTENT_TOKENS``): a long article.
Anthropic's pricing docs put an average page at ~2,500 tokens and a large documentation page at ~25,000."""

JsonObject = dict[str, Any]


class Usage(BaseModel):
    """Tokens billed for one or more model requests."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    web_search_requests: int = Field(default=0, description="Server-side web searches (billed per search).")
    web_fetch_requests: int = Field(default=0, description="Server-side web fetches (billed as tokens only).")

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
            web_fetch_requests=self.web_fetch_requests + other.web_fetch_requests,
        )

    def __sub__(self, other: Usage) -> Usage:
        """Per kind, never below zero (a stored result may predate its usage being recorded)."""
        counts = {name: max(0, getattr(self, name) - getattr(other, name)) for name in type(self).model_fields}
        return Usage.model_validate(counts)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


class Spend(BaseModel):
    """What some model calls cost: tokens over every attempt (repairs included), and their price."""

    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(usage=self.usage + other.usage, cost_usd=round(self.cost_usd + other.cost_usd, 8))


class Subtask(BaseModel):
    """One unit of work for one specialist subagent."""

    model_config = ConfigDict(extra="forbid")

    id: Slug
    role: Slug = Field(description="A built-in or configured role, e.g. researcher, coder, reviewer.")
    instructions: str = Field(min_length=1, description="What this subagent must do, self-contained.")
    depends_on: list[Slug] = Field(
        default_factory=list[str], description="Ids of subtasks whose outputs this one needs."
    )
    output_schema: JsonObject | None = Field(
        default=None, description="JSON Schema (type object) for this subtask's output; the role default if null."
    )
    expected_output_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_EXPECTED_OUTPUT_TOKENS,
        description="Rough length of this subtask's output in tokens, if it differs from its role's typical "
        "length (e.g. 200 for a short list, 3000 for a full report). Used for the cost estimate and to start "
        "long work first; never a limit.",
    )
    tier: SubtaskTier | None = Field(
        default=None,
        description="Model tier for this subtask: fast (cheap, simple work), balanced (the strong subagent model) "
        "or deep (hard reasoning); null: its role's default. A role model set in SUBAGENT_MCP_ROLE_MODELS wins.",
    )


class TaskEstimate(BaseModel):
    """Expected and worst-case tokens and cost of one model call (a subtask, or the synthesis)."""

    task_id: str
    model: str
    input_tokens: int = Field(description="Expected prompt tokens, with dependencies at their expected length.")
    max_input_tokens: int = Field(description="Prompt tokens if every dependency's output ran to its max_tokens.")
    cache_read_tokens: int = Field(default=0, description="Of input_tokens, expected to be read from the prompt cache.")
    cache_write_tokens: int = Field(
        default=0, description="Of input_tokens, expected to be written to the prompt cache."
    )
    output_tokens: int = Field(
        description="Expected output tokens: the subtask's expected_output_tokens, else its role's mean reply length."
    )
    max_output_tokens: int = Field(description="The call's max_tokens: the worst case.")
    cost_usd: float = Field(description="Expected cost.")
    max_cost_usd: float = Field(
        description="Worst-case cost: the worst-case prompt, max_tokens of output and max_uses of each server tool."
    )


class PlanEstimate(BaseModel):
    """What running a plan should cost, before a token is spent on it; recomputed when it runs."""

    tasks: list[TaskEstimate]
    synthesis: TaskEstimate | None = None
    input_tokens: int
    cache_read_tokens: int = Field(default=0, description="Of input_tokens, expected to be read from the prompt cache.")
    output_tokens: int
    cost_usd: float
    max_cost_usd: float
    critical_path_subtasks: int = Field(description="Subtasks on the longest dependency chain.")
    batch: bool = Field(
        default=False, description="Subtasks priced for batch mode (Message Batches, half price); synthesis live."
    )
    batch_cost_usd: float | None = Field(
        default=None, description="Expected cost if the subtasks ran in batch mode (execute_plan(batch=true))."
    )
    method: str = Field(
        default="prompt sizes by ~3.5 chars/token; output at each subtask's expected length, else its role's "
        "typical length; a cached prefix written by the first subtask sharing it and read by the others; "
        "prices from the table",
        description="How the figures were reached, so they are read as estimates.",
    )


class Plan(BaseModel):
    """A validated DAG of subtasks.

    Construction rejects an empty plan, duplicate ids, unknown or self dependencies and cycles,
    naming the offending ids. Pass ``context={"max_subtasks": n}`` to ``model_validate`` to apply
    the configured size limit.
    """

    model_config = ConfigDict(extra="forbid")

    plan_id: str = Field(
        description=f"Letters, digits, '-', '_' and '.' (not first), at most {MAX_PLAN_ID_CHARS} characters."
    )
    task: str = Field(min_length=1, description="The task statement the plan decomposes.")
    summary: str = ""
    subtasks: list[Subtask]
    estimate: PlanEstimate | None = Field(
        default=None, description="Filled in by plan_task for review; ignored and recomputed by execute_plan."
    )
    planning: Spend | None = Field(
        default=None, description="What the planner's calls cost; filled in by plan_task, ignored by execute_plan."
    )

    @field_validator("plan_id")
    @classmethod
    def _check_plan_id(cls, plan_id: str) -> str:
        if not PLAN_ID.fullmatch(plan_id):
            shown = plan_id if len(plan_id) <= 40 else plan_id[:39] + "…"
            raise ValueError(
                f"plan_id {shown!r} is not a usable id: use letters, digits, '-', '_' and '.' (not first), "
                f"at most {MAX_PLAN_ID_CHARS} characters"
            )
        return plan_id

    @model_validator(mode="after")
    def _check_dag(self, info: ValidationInfo) -> Self:
        check_subtasks(self.subtasks, _max_from(info))
        return self

    def graph(self) -> dict[str, list[str]]:
        """The dependency graph as ``{id: depends_on}``."""
        return {s.id: s.depends_on for s in self.subtasks}

    def subtask(self, task_id: str) -> Subtask:
        for s in self.subtasks:
            if s.id == task_id:
                return s
        raise KeyError(task_id)


def _max_from(info: ValidationInfo) -> int:
    context: object = info.context
    if isinstance(context, dict) and "max_subtasks" in context:
        limit = context["max_subtasks"]
        if isinstance(limit, int):
            return min(limit, HARD_MAX_SUBTASKS)
    return HARD_MAX_SUBTASKS


class SubagentResult(BaseModel):
    """What one subtask produced, or why it did not, with what it cost."""

    task_id: str
    role: str
    status: TaskStatus
    output: JsonObject | None = None
    error: str | None = Field(default=None, description="Why the task failed or was skipped, for a person.")
    attempts: int = Field(default=0, description="Model requests sent, retries and repair turns included.")
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    model: str | None = Field(default=None, description="The model that answered (after an escalation, the last).")
    escalated_from: str | None = Field(
        default=None,
        description="The model whose output stayed invalid after its repair turn, when the subtask was then tried "
        "on the next tier's (SUBAGENT_MCP_ESCALATE); attempts, usage and cost include that try.",
    )
    duration_s: float = 0.0
    started_at_s: float | None = Field(default=None, description="Seconds from run start; null outside a run.")
    finished_at_s: float | None = Field(default=None, description="Seconds from run start; null outside a run.")


class RunReport(BaseModel):
    """The outcome of executing a plan: every task's result and the run's totals."""

    run_id: str
    plan_id: str
    status: RunStatus
    results: list[SubagentResult]
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    makespan_s: float = 0.0
    estimate: PlanEstimate | None = Field(default=None, description="The estimate made before the run, for comparison.")
    results_omitted: int = Field(
        default=0,
        description="Results left out of this tool result to keep it within what hosts accept (failures are kept "
        "first, and the estimate keeps only its totals); the run resource subagent://runs/{run_id} has them all.",
    )
    graph: dict[str, list[str]] = Field(
        default_factory=dict[str, list[str]],
        description="Each subtask's depends_on, in plan order, so the run can be drawn without its plan "
        "(empty in reports stored before it was added).",
    )
    batch_saved_usd: float | None = Field(
        default=None,
        description="Batch mode only: what the Message Batches discount (half price) saved on these results "
        "against running them live.",
    )
    over_budget: str | None = Field(
        default=None,
        description="Said plainly if what the run billed (its planning included) crossed its max_cost_usd or "
        "max_total_tokens, which reserving each call's worst case is meant to prevent; null within them.",
    )
    error: str | None = Field(
        default=None,
        description="Why the run failed as a whole: an internal error (a bug) stopped it; the server log has the "
        "details. Its finished results are kept, and resume_run runs the rest.",
    )


class Synthesis(BaseModel):
    """The final answer merged from a run's results, with what is missing said plainly."""

    answer: str
    complete: bool = Field(description="True only if every subtask succeeded.")
    missing: list[str] = Field(
        default_factory=list[str],
        description="One line per subtask that did not succeed: its id, status and why.",
    )
    gaps: list[str] = Field(
        default_factory=list[str], description="What the synthesizer says is unanswered or uncertain as a result."
    )
    read_by_summary: list[str] = Field(
        default_factory=list[str],
        description="Results the synthesizer read by their summary alone: later subtasks used their full output "
        "and were read whole (SUBAGENT_MCP_SYNTHESIS_READS=all reads every result whole).",
    )
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    model: str | None = None


class OrchestrateResult(BaseModel):
    """Everything ``orchestrate`` did: the plan, the run, and the synthesis (or why it failed)."""

    plan: Plan
    report: RunReport
    synthesis: Synthesis | None
    synthesis_error: str | None = None
    total: Spend = Field(
        default_factory=Spend, description="Planning, every subtask attempt and the synthesis, together."
    )


# --- the model seam -------------------------------------------------------------------------------


class ModelMessage(BaseModel):
    """One turn of a conversation sent to a model."""

    role: Literal["user", "assistant"]
    content: str


class CacheMarks(BaseModel):
    """Where a request's shared prefix ends, for prompt caching: the API caches the prompt up to each mark."""

    model_config = ConfigDict(frozen=True)

    system: bool = False
    """Mark the system prompt (with the output schema, which the API puts before it)."""
    first_user_chars: int = 0
    """Mark the first user turn after this many characters (0: no mark there)."""
    ttl: Literal["5m", "1h"] = "5m"


class CompletionRequest(BaseModel):
    """A request for one JSON object matching ``output_schema``."""

    model: str
    system: str
    messages: list[ModelMessage]
    output_schema: JsonObject
    max_tokens: int = 4096
    label: str = Field(default="", description="What the call is for (a task id), for logs and fakes.")
    cache: CacheMarks | None = Field(default=None, description="Prompt-cache marks; None sends no cache_control.")
    server_tools: dict[str, int] = Field(
        default_factory=dict[str, int],
        description="API server tools offered (web_search, web_fetch, code_execution) → most uses per call.",
    )
    web_fetch_max_content_tokens: int = Field(
        default=DEFAULT_FETCH_CONTENT_TOKENS,
        ge=1,
        description="web_fetch's max_content_tokens: most tokens of a fetched page's text the prompt takes in, "
        "so the budget can reserve what fetches add (the API bills them as input).",
    )


StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"
]


class Completion(BaseModel):
    """A model's reply to one ``CompletionRequest``: raw text, why it stopped, and what it cost."""

    text: str
    stop_reason: StopReason | str | None = "end_turn"
    usage: Usage = Field(default_factory=Usage)
    model: str
    attempts: int = Field(default=1, description="HTTP requests this completion took, retries included.")
    request_id: str | None = None
    refusal: str | None = Field(default=None, description="Why the model refused (category: explanation), if it did.")
