"""Stored plans and runs as MCP resources and run tools, so a host can find and attach past work.

``subagent://runs`` lists recent runs; ``subagent://runs/{run_id}`` and ``subagent://plans/{plan_id}``
read one. ``list_runs`` and ``resume_run`` are the matching tools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from . import render
from .contracts import RunReport
from .errors import InputError, SubagentMCPError
from .mcp_common import MODEL_CALLING, ServiceContext, service_of, structured, tool_errors
from .mcp_progress import ProgressReporter
from .service import Service
from .store import RunRecord, RunSummary

JSON = "application/json"


class RunList(BaseModel):
    """Recent runs, newest first."""

    runs: list[RunSummary]


def register_runs(server: MCPServer[Service], current: Callable[[], Service]) -> None:
    """Add run resources and tools; ``current`` returns the live service (static resources get no Context)."""

    @server.resource("subagent://runs", name="recent_runs", title="Recent runs", mime_type=JSON)
    async def recent_runs() -> str:
        """The 20 most recent runs with their status, task counts and cost."""
        return RunList(runs=await current().list_runs(20)).model_dump_json(indent=1)

    @server.resource("subagent://runs/{run_id}", name="run", title="One run", mime_type=JSON)
    async def run(run_id: str) -> str:
        """A run's report (or, for an interrupted run, its stored results) with usage of every attempt."""
        return (await _record(current(), run_id)).model_dump_json(indent=1)

    @server.resource("subagent://plans/{plan_id}", name="plan", title="One plan", mime_type=JSON)
    async def plan(plan_id: str) -> str:
        """A stored plan, as plan_task returned it (without the estimate)."""
        stored = await current().store.get_plan(plan_id)
        if stored is None:
            raise ResourceNotFoundError(f"no plan {plan_id!r} is stored; read subagent://runs to find runs")
        return stored.model_dump_json(indent=1)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_runs(
        ctx: ServiceContext,
        limit: Annotated[int, Field(description="How many recent runs (1-500).")] = 20,
    ) -> Annotated[CallToolResult, RunList]:
        """List recent runs, newest first: id, task, status, task counts, cost. Read subagent://runs/{id} for one."""
        with tool_errors():
            runs = RunList(runs=await service_of(ctx).list_runs(limit))
        lines = [f"{r.run_id} {r.status} ${r.cost_usd:.4f} {dict(r.counts)} {r.task}" for r in runs.runs]
        return structured(runs, "\n".join(lines) or "No runs yet.")

    @server.tool(annotations=MODEL_CALLING)
    async def resume_run(
        run_id: Annotated[str, Field(description="A run that was interrupted, cancelled, partial or failed.")],
        ctx: ServiceContext,
        max_cost_usd: Annotated[
            float | None, Field(description="Replace the run's USD ceiling, e.g. raise it after a budget refusal.")
        ] = None,
        max_total_tokens: Annotated[int | None, Field(description="Replace the run's token ceiling.")] = None,
    ) -> Annotated[CallToolResult, RunReport]:
        """Continue a stored run: succeeded subtasks are kept and never called again; all others run."""
        with tool_errors():
            report = await service_of(ctx).resume_run(
                run_id, ProgressReporter(ctx), max_cost_usd=max_cost_usd, max_total_tokens=max_total_tokens
            )
        return structured(report, render.report_text(report))


async def _record(service: Service, run_id: str) -> RunRecord:
    try:
        return (await service.get_run(run_id))[1]
    except InputError as exc:
        raise ResourceNotFoundError(str(exc)) from None
    except SubagentMCPError as exc:
        raise ResourceError(str(exc)) from None
