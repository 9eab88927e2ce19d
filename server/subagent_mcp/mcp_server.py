"""The MCP face of the service: thin tools that parse arguments, call ``Service`` and render results.

``create_server(settings)`` builds the server without I/O; its lifespan opens the ``Service``
(and so the model client), which every tool reaches through its ``Context``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from . import __version__, render
from .backends.base import ModelBackend
from .contracts import JsonObject, Plan, SubagentResult
from .errors import SubagentMCPError
from .service import Service
from .settings import Settings

INSTRUCTIONS = """Delegates work to a team of Claude subagents.
For a whole task call `orchestrate`. To stay in control: `plan_task` returns a plan you can edit,
then run pieces with `run_subagent`. Results say plainly what failed."""

ServiceContext = Context[Service, Any]


def create_server(settings: Settings, backend: ModelBackend | None = None) -> MCPServer[Service]:
    """Build the server; nothing is opened until a client connects and the lifespan runs."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Service]) -> AsyncGenerator[Service]:
        async with Service.open(settings, backend) as service:
            yield service

    server = MCPServer[Service](
        "subagent-mcp", instructions=INSTRUCTIONS, version=__version__, lifespan=lifespan, log_level=settings.log_level
    )
    register_tools(server)
    return server


def register_tools(server: MCPServer[Service]) -> None:
    """Add the tools to ``server``; each is one service call between parsing and rendering."""

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True))
    async def plan_task(
        task: Annotated[str, Field(description="The task to decompose, stated fully.")],
        ctx: ServiceContext,
        max_subtasks: Annotated[
            int | None, Field(description="At most this many subtasks (server max applies).")
        ] = None,
        roles: Annotated[list[str] | None, Field(description="Only use these roles (default: all).")] = None,
    ) -> Annotated[CallToolResult, Plan]:
        """Decompose a task into a validated DAG of subtasks, each with a specialist role and dependencies.

        Spends planner-model tokens only; returns the plan for review or editing before execute_plan.
        """
        with tool_errors():
            plan = await service_of(ctx).plan_task(task, max_subtasks=max_subtasks, roles=roles)
        return structured(plan, render.plan_text(plan))

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True))
    async def run_subagent(
        role: Annotated[str, Field(description="researcher, coder, reviewer, writer or analyst.")],
        instructions: Annotated[str, Field(description="What the subagent must do, self-contained.")],
        ctx: ServiceContext,
        context: Annotated[str | None, Field(description="Extra material the subagent should use.")] = None,
        output_schema: Annotated[
            JsonObject | None, Field(description="JSON Schema (type object) for the output; role default if null.")
        ] = None,
        model: Annotated[str | None, Field(description="Model id override (default: the role's model).")] = None,
    ) -> Annotated[CallToolResult, SubagentResult]:
        """Run one specialist subagent on one piece of work and return its validated JSON output with usage."""
        with tool_errors():
            result = await service_of(ctx).run_subagent(role, instructions, context, output_schema, model)
        return structured(result, render.result_text(result), is_error=result.status != "succeeded")


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
    """A result with both forms: the model as structured content and a short text for reading."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json"),
        is_error=is_error,
    )
