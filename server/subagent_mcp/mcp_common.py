"""Pieces every MCP tool module shares: the typed context, error mapping and two-form results."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .compact import fit_for_host
from .contracts import RunReport
from .errors import SubagentMCPError
from .service import Service

ServiceContext = Context[Service, Any]

MODEL_CALLING = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
"""Tools that call models: they spend money and record plans and runs, but delete or overwrite nothing."""


MaxSubtasks = Annotated[
    int | None,
    Field(
        description="At most this many subtasks: 1 to SUBAGENT_MCP_MAX_SUBTASKS (default 12).",
        json_schema_extra={"minimum": 1},
    ),
]
MaxConcurrency = Annotated[
    int | None,
    Field(
        description="Subagents in flight at once: 1 to 1024 (default: the server's SUBAGENT_MCP_MAX_CONCURRENCY).",
        json_schema_extra={"minimum": 1, "maximum": 1024},
    ),
]
TimeoutS = Annotated[
    float | None,
    Field(
        description="Whole-run timeout in seconds: 0.001 to 86400.",
        json_schema_extra={"minimum": 0.001, "maximum": 86_400},
    ),
]
MaxCostUsd = Annotated[
    float | None,
    Field(
        description="Stop starting subtasks before the run could cost more than this many USD (above 0).",
        json_schema_extra={"exclusiveMinimum": 0},
    ),
]
MaxTotalTokens = Annotated[
    int | None, Field(description="Likewise, a ceiling on total tokens (at least 1).", json_schema_extra={"minimum": 1})
]
"""The sizes and ceilings run tools take, with the ranges the server enforces stated where a host reads them."""


def service_of(ctx: ServiceContext) -> Service:
    return ctx.request_context.lifespan_context


@contextmanager
def tool_errors() -> Generator[None]:
    """Turn our deliberate errors into tool errors whose text reaches the host as written."""
    try:
        yield
    except SubagentMCPError as exc:
        raise ToolError(str(exc)) from exc


def structured(model: BaseModel, text: str, is_error: bool = False) -> CallToolResult:
    """A result with both forms: the model as structured content and a short text for reading.

    Subtask outputs are shrunk if the whole would pass what hosts accept; the text says so and where
    the full outputs are.
    """
    fitted, cut = fit_for_host(model)
    if cut:
        report = fitted if isinstance(fitted, RunReport) else getattr(fitted, "report", None)
        run_id = report.run_id if isinstance(report, RunReport) else None
        where = f"read subagent://runs/{run_id} for them whole" if run_id else "ask for a shorter output"
        omitted = report.results_omitted if isinstance(report, RunReport) else 0
        what = f"{omitted} result(s) were left out and the rest's outputs" if omitted else f"{cut} subtask output(s)"
        text += f"\n\nNote: {what} were shortened to keep this result small; {where}."
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=fitted.model_dump(mode="json"),
        is_error=is_error,
    )
