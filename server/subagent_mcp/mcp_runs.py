"""Run tools: wait for a background run, cancel it, resume it, list runs; and the answer every run tool gives.

A run tool waits at most ``wait_s`` (default ``SUBAGENT_MCP_TOOL_WAIT_S``, under every host's cut-off)
and returns the result, or a handle whose text says exactly what to call next.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.config import JsonDict

from . import render
from .background import CANCELLED_WHILE_PLANNING, LiveRun, Outcome
from .contracts import OrchestrateResult, RunReport
from .errors import InputError
from .handles import RunHandle
from .mcp_common import MODEL_CALLING, ServiceContext, service_of, structured, tool_errors
from .mcp_progress import ProgressReporter
from .replicas import cancel_elsewhere, wait_elsewhere
from .run_view import UI_META
from .service import Service
from .store import RunSummary
from .telemetry import link_to_run

BatchFlag = Annotated[
    bool,
    Field(
        description="Send the subtasks through the Message Batches API at half price: slower (minutes, up to 24 h), "
        "so the run goes on in the server and wait_run returns it; planning and synthesis stay live calls."
    ),
]

_WAIT_RANGE: JsonDict = {"minimum": 0, "maximum": 86_400}
WaitS = Annotated[
    float | None,
    Field(
        description="Seconds to wait for the result before returning the progress so far: 0 to 86400 (default: "
        "the server's SUBAGENT_MCP_TOOL_WAIT_S, 40; 0 returns at once). Any wait is safe: a host that gives up "
        "on this call leaves the run running.",
        json_schema_extra=_WAIT_RANGE,
    ),
]
"""wait_run's wait: it never owns the run, so no wait cancels it."""
StartWaitS = Annotated[
    float | None,
    Field(
        description="Seconds to wait for the result before returning a handle to wait on: 0 to 86400 (default: "
        "the server's SUBAGENT_MCP_TOOL_WAIT_S, 40; 0 returns at once). Keep it under your host's tool-call "
        "timeout (Claude Desktop: about 60 s): a host that gives up on this call cancels the run it started. "
        "Once you have the handle, wait_run is safe with any wait_s (it never cancels the run).",
        json_schema_extra=_WAIT_RANGE,
    ),
]
"""The wait of a tool that starts a run (orchestrate, execute_plan, resume_run): that call owns the run."""
RunId = Annotated[str, Field(description="The run_id a run tool returned (list_runs shows recent ones).")]

_OBJECT = ConfigDict(json_schema_extra={"type": "object"})  # MCP wants an object schema at the root


class ReportOrHandle(RootModel[RunReport | RunHandle]):
    """The run's report, or a handle while it is still running."""

    model_config = _OBJECT


class OrchestrateOrHandle(RootModel[OrchestrateResult | RunHandle]):
    """The orchestration's result, or a handle while it is still running."""

    model_config = _OBJECT


class AnyOutcome(RootModel[OrchestrateResult | RunReport | RunHandle]):
    """What the run's own tool returns once it ends, or a handle while it has not."""

    model_config = _OBJECT


class RunList(BaseModel):
    """Recent runs, newest first."""

    runs: list[RunSummary]


def outcome_result(outcome: Outcome | RunHandle) -> CallToolResult:
    """A finished run's result (or a handle) in both forms, as its tool returns it."""
    if isinstance(outcome, RunHandle):
        return structured(outcome, render.handle_text(outcome))
    if isinstance(outcome, OrchestrateResult):
        return structured(outcome, render.orchestrate_text(outcome))
    return structured(outcome, render.report_text(outcome))


async def stopped_outcome(service: Service, run: LiveRun) -> Outcome | RunHandle:
    """A run this server stopped, as stored (the store's counts, not the last progress heard), in its tool's shape.

    A run stopped while planning has nothing stored: a handle that says to start it again.

    Raises:
        InputError: the run is not stored (a database changed under the server).
    """
    if run.phase == "planning":
        return run.handle(CANCELLED_WHILE_PLANNING)
    return await service.outcome(run.run_id)


def next_step(run: LiveRun) -> str:
    return (
        f"The run goes on in the server. Call wait_run(run_id={run.run_id!r}) for the result: it returns the "
        f"moment the run ends (or with progress when its wait_s runs out). cancel_run(run_id={run.run_id!r}) stops it."
    )


async def reply(ctx: ServiceContext, run: LiveRun, wait: float, *, owner: bool) -> CallToolResult:
    """Wait up to ``wait`` seconds (checked by the tool) for ``run``, with progress; its result, or a handle.

    ``owner`` (the call that started the run): cancelling this call before it returned cancels the run.
    """
    service = service_of(ctx)
    try:
        ended = await service.runs.wait(run, wait, ProgressReporter(ctx).step)
    except anyio.get_cancelled_exc_class():
        if owner:
            await service.runs.stop(run)
        raise
    if not ended:
        return outcome_result(run.handle(next_step(run)))
    if run.error is not None:
        if run.stopped is not None:
            with tool_errors():
                return outcome_result(await stopped_outcome(service, run))
        raise ToolError(str(run.error))
    assert run.outcome is not None
    return outcome_result(run.outcome)


def register_run_tools(server: MCPServer[Service]) -> None:
    """Add wait_run, cancel_run, resume_run and list_runs."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False), meta=UI_META)
    async def wait_run(
        run_id: RunId, ctx: ServiceContext, wait_s: WaitS = None
    ) -> Annotated[CallToolResult, AnyOutcome]:
        """Wait for a run started by execute_plan, orchestrate or resume_run; return its result when it ends.

        Returns what the starting tool would have returned (for orchestrate, the synthesis and total), or,
        if wait_s runs out first, the progress so far: call wait_run again. Cancelling this call leaves the
        run alone.
        """
        service = service_of(ctx)
        with tool_errors():
            wait = service.wait_seconds(wait_s)
            run = await service.live_run(run_id)
        if run is not None:
            link_to_run(run.span, run.run_id)  # the run's spans are in the trace of the call that started it
            return await reply(ctx, run, wait, owner=False)
        with tool_errors():  # another server runs it (or ran it): read it from the store until it ends
            return outcome_result(await wait_elsewhere(service, run_id, wait, ProgressReporter(ctx).step))

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True, open_world_hint=False))
    async def cancel_run(run_id: RunId, ctx: ServiceContext) -> Annotated[CallToolResult, AnyOutcome]:
        """Stop a running run: in-flight subagent calls are cancelled, what finished is kept (resume_run continues)."""
        service = service_of(ctx)
        with tool_errors():
            run = await service.live_run(run_id)  # on Temporal: its workflow, followed from here
            if run is None:  # another server may run it: ask it to stop, through the store
                return outcome_result(await cancel_elsewhere(service, run_id))
            if run.done.is_set():
                raise InputError(f"run {run_id!r} is not running in this server: {await service.where(run_id)}")
            await service.runs.stop(run)
            await service.cancel_batches(run_id)
            return outcome_result(await stopped_outcome(service, run))

    @server.tool(annotations=MODEL_CALLING, meta=UI_META)
    async def resume_run(
        run_id: Annotated[str, Field(description="A run that was interrupted, cancelled, partial or failed.")],
        ctx: ServiceContext,
        max_cost_usd: Annotated[
            float | None,
            Field(
                description="Replace the run's USD ceiling (above 0), e.g. raise it after a budget refusal.",
                json_schema_extra={"exclusiveMinimum": 0},
            ),
        ] = None,
        max_total_tokens: Annotated[
            int | None,
            Field(description="Replace the run's token ceiling (at least 1).", json_schema_extra={"minimum": 1}),
        ] = None,
        wait_s: StartWaitS = None,
    ) -> Annotated[CallToolResult, AnyOutcome]:
        """Continue a stored run: succeeded subtasks are kept and never called again; all others run.

        Returns what the run's own tool returns: for orchestrate, synthesized again (answer and total).
        """
        with tool_errors():
            service = service_of(ctx)
            wait = service.wait_seconds(wait_s)
            run = await service.start_resume(run_id, max_cost_usd=max_cost_usd, max_total_tokens=max_total_tokens)
        return await reply(ctx, run, wait, owner=True)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_runs(
        ctx: ServiceContext,
        limit: Annotated[
            int, Field(description="How many recent runs (1-500).", json_schema_extra={"minimum": 1, "maximum": 500})
        ] = 20,
    ) -> Annotated[CallToolResult, RunList]:
        """List recent runs, newest first: id, task, status, task counts, cost. Read subagent://runs/{id} for one."""
        with tool_errors():
            runs = RunList(runs=await service_of(ctx).list_runs(limit))
        return structured(runs, render.runs_text(runs.runs))
