"""The MCP face of the service: thin tools that parse arguments, call ``Service`` and render results.

``create_server(settings)`` builds the server without I/O; its lifespan opens the ``Service``
(and so the model client), which every tool reaches through its ``Context``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import CallToolResult
from pydantic import Field

from . import __version__, render
from .backends.base import ModelBackend
from .contracts import JsonObject, Plan, SubagentResult, Synthesis
from .logs import install_redaction
from .mcp_base import SubagentServer
from .mcp_common import (
    MODEL_CALLING,
    MaxConcurrency,
    MaxCostUsd,
    MaxSubtasks,
    MaxTotalTokens,
    ServiceContext,
    TimeoutS,
    service_of,
    structured,
    tool_errors,
)
from .mcp_resources import register_runs
from .mcp_roles import register_roles
from .mcp_runs import BatchFlag, OrchestrateOrHandle, ReportOrHandle, StartWaitS, register_run_tools, reply
from .run_view import UI_META, run_view_extension
from .service import Service
from .settings import Settings
from .telemetry import Telemetry

INSTRUCTIONS = """Delegates work to a team of Claude subagents.
For a whole task call `orchestrate`. To stay in control: `plan_task` returns a plan you can edit,
`execute_plan` runs it (in parallel where dependencies allow), `synthesize` merges the results;
`run_subagent` runs one specialist. Results say plainly what failed and what it cost.
Runs take minutes and go on in the server: when `orchestrate`, `execute_plan` or `resume_run` return
status "running" with a run_id, call `wait_run(run_id)` (again, until it returns the result);
`cancel_run(run_id)` stops one."""


def create_server(
    settings: Settings, backend: ModelBackend | None = None, telemetry: Telemetry | None = None
) -> MCPServer[Service]:
    """Build the server; nothing is opened until a client connects and the lifespan runs.

    ``telemetry`` (default: the global OpenTelemetry providers') is where its spans and metrics go.
    """

    live: list[Service] = []

    @asynccontextmanager
    async def lifespan(_: MCPServer[Service]) -> AsyncGenerator[Service]:
        async with Service.open(settings, backend, telemetry) as service:
            live.append(service)
            try:
                yield service
            finally:
                live.remove(service)

    def current() -> Service:
        if not live:
            raise ResourceError("the server is not running")
        return live[-1]

    server = SubagentServer[Service](
        "subagent-mcp",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        extensions=[run_view_extension()],  # MCP Apps: hosts that support it draw run results in the run view
    )
    install_redaction(settings)  # MCPServer() may have just added a stderr handler
    register_tools(server)
    register_runs(server, current)
    register_run_tools(server)
    register_roles(server, current, lambda: server.remote_clients)
    register_prompts(server)
    return server


def register_tools(server: MCPServer[Service]) -> None:
    """Add the tools to ``server``; each is one service call between parsing and rendering."""

    @server.tool(annotations=MODEL_CALLING)
    async def plan_task(
        task: Annotated[str, Field(description="The task to decompose, stated fully.")],
        ctx: ServiceContext,
        max_subtasks: MaxSubtasks = None,
        roles: Annotated[list[str] | None, Field(description="Only use these roles (default: all).")] = None,
    ) -> Annotated[CallToolResult, Plan]:
        """Decompose a task into a validated DAG of subtasks, each with a specialist role and dependencies.

        Spends planner-model tokens only; returns the plan for review or editing before execute_plan.
        """
        with tool_errors():
            plan = await service_of(ctx).plan_task(task, max_subtasks=max_subtasks, roles=roles)
        return structured(plan, render.plan_text(plan))

    @server.tool(annotations=MODEL_CALLING)
    async def run_subagent(
        role: Annotated[
            str, Field(description="researcher, coder, reviewer, writer, analyst, or a role list_roles shows.")
        ],
        instructions: Annotated[str, Field(description="What the subagent must do, self-contained.")],
        ctx: ServiceContext,
        context: Annotated[str | None, Field(description="Extra material the subagent should use.")] = None,
        output_schema: Annotated[
            JsonObject | None, Field(description="JSON Schema (type object) for the output; role default if null.")
        ] = None,
        model: Annotated[
            str | None,
            Field(description="Model id (default: the role's model); it must have a price (SUBAGENT_MCP_PRICES)."),
        ] = None,
    ) -> Annotated[CallToolResult, SubagentResult]:
        """Run one specialist subagent on one piece of work and return its validated JSON output with usage."""
        with tool_errors():
            result = await service_of(ctx).run_subagent(role, instructions, context, output_schema, model)
        return structured(result, render.result_text(result), is_error=result.status != "succeeded")

    @server.tool(annotations=MODEL_CALLING, meta=UI_META)
    async def execute_plan(
        ctx: ServiceContext,
        plan: Annotated[Plan | None, Field(description="A plan as plan_task returns it (edited or not).")] = None,
        plan_id: Annotated[str | None, Field(description="Or the id of a plan made by plan_task.")] = None,
        max_concurrency: MaxConcurrency = None,
        timeout_s: TimeoutS = None,
        max_cost_usd: MaxCostUsd = None,
        max_total_tokens: MaxTotalTokens = None,
        wait_s: StartWaitS = None,
        batch: BatchFlag = False,
    ) -> Annotated[CallToolResult, ReportOrHandle]:
        """Run a plan: each subtask starts as soon as its dependencies succeed, within a concurrency cap.

        A failed subtask's dependents are skipped (never run on missing input); independent branches
        finish. Sends progress notifications while running. Returns every task's result with usage,
        or, if the run outlasts wait_s, a handle (run_id, progress): then call wait_run(run_id).
        """
        with tool_errors():
            service = service_of(ctx)
            wait = service.wait_seconds(wait_s)  # checked before anything starts
            run = await service.start_execute(
                plan, plan_id, max_concurrency, timeout_s, max_cost_usd=max_cost_usd, max_total_tokens=max_total_tokens,
                batch=batch,
            )  # fmt: skip
        return await reply(ctx, run, wait, owner=True)

    @server.tool(annotations=MODEL_CALLING)
    async def synthesize(
        ctx: ServiceContext,
        run_id: Annotated[str | None, Field(description="The run_id execute_plan returned.")] = None,
        results: Annotated[
            list[SubagentResult] | None, Field(description="Or subagent results to merge directly.")
        ] = None,
        task: Annotated[
            str | None, Field(description="What the answer must address (default: the plan's task).")
        ] = None,
        force: Annotated[
            bool, Field(description="Synthesize again even if this run already has a synthesis (it costs again).")
        ] = False,
    ) -> Annotated[CallToolResult, Synthesis]:
        """Merge a run's results into a final answer that says plainly which subtasks failed or were skipped.

        A run's synthesis is stored with it: asking again returns it at no cost unless force is set.
        """
        with tool_errors():
            synthesis = await service_of(ctx).synthesize(run_id, results, task, force)
        return structured(synthesis, render.synthesis_text(synthesis))

    @server.tool(annotations=MODEL_CALLING, meta=UI_META)
    async def orchestrate(
        task: Annotated[str, Field(description="The whole task, stated fully.")],
        ctx: ServiceContext,
        max_subtasks: MaxSubtasks = None,
        max_concurrency: MaxConcurrency = None,
        max_cost_usd: MaxCostUsd = None,
        max_total_tokens: MaxTotalTokens = None,
        wait_s: StartWaitS = None,
        batch: BatchFlag = False,
    ) -> Annotated[CallToolResult, OrchestrateOrHandle]:
        """Plan, run and synthesize a whole task, with progress; says what is incomplete.

        max_cost_usd / max_total_tokens hold the whole orchestration (planning, subtasks, synthesis).
        Real tasks take minutes: if the work outlasts wait_s this returns a handle (run_id, progress) and
        the run goes on in the server; call wait_run(run_id) until it returns the answer.
        """
        with tool_errors():
            service = service_of(ctx)
            wait = service.wait_seconds(wait_s)
            run = await service.start_orchestrate(
                task, max_subtasks, max_concurrency, batch=batch, max_cost_usd=max_cost_usd,
                max_total_tokens=max_total_tokens,
            )  # fmt: skip
        return await reply(ctx, run, wait, owner=True)


DELEGATE_PROMPT = """Delegate this task to a team of specialist subagents using the subagent-mcp tools:

{task}

1. Call `plan_task` with the task. Show me the plan (subtasks, roles, dependencies) and its cost estimate.
2. If a subtask is missing, redundant or badly specified, edit the plan object; then call `execute_plan`
   with the plan (or its plan_id){budget}.
3. If it returns status "running", the run goes on in the server: call `wait_run` with its run_id, again
   each time it comes back still running, until it returns the report. Tell me the progress meanwhile.
4. Call `synthesize` with the run_id.
5. Give me the final answer. Say plainly which subtasks failed or were skipped and what that leaves
   unanswered, and what the run cost."""


def register_prompts(server: MCPServer[Service]) -> None:
    """Prompts a person can pick in the host to start the usual flow."""

    @server.prompt(title="Delegate a task to subagents")
    def delegate(task: str, max_cost_usd: str | None = None) -> str:
        """Plan a task with plan_task, review the plan, run it with execute_plan, then synthesize."""
        budget = f", max_cost_usd={max_cost_usd}" if max_cost_usd else ""
        return DELEGATE_PROMPT.format(task=task.strip(), budget=budget)
