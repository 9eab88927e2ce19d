"""Pieces every MCP tool module shares: the typed context, error mapping and two-form results."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from .errors import SubagentMCPError
from .service import Service

ServiceContext = Context[Service, Any]


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
