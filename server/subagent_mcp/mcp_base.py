"""The SDK's ``MCPServer`` as hosts should meet it: clean descriptions, readable argument errors, logging levels.

Five fixes that hold for every tool, prompt and client, so no tool has to remember them:
docstrings lose their source indentation, arguments that fail validation are listed one per line
(not as a pydantic dump), handshake-era clients can set a log level (``mcp_logging``), a
prompts/get for an unknown prompt or without a required argument is the spec's -32602, and every
tool's text (result or error) shows control characters instead of sending them (``visible``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    ContentBlock,
    GetPromptResult,
    Icon,
    InputRequiredResult,
    TextContent,
    ToolAnnotations,
)
from pydantic import ValidationError

from .arguments import argument_problems, text_problems, unknown_arguments
from .mcp_logging import serve_set_level
from .visible import visible

LifespanT = TypeVar("LifespanT")


class SubagentServer(MCPServer[LifespanT]):
    """``MCPServer`` with descriptions dedented, argument and prompt errors plain, ``logging/setLevel`` served."""

    remote_clients: bool = False
    """Served over HTTP on a non-loopback address (set by ``http_app``): listings hide the home folder."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        serve_set_level(self)

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        """Register ``fn`` as the SDK does, its description (given or docstring) dedented."""
        super().add_tool(
            fn,
            name=name,
            title=title,
            description=inspect.cleandoc(description if description is not None else fn.__doc__ or ""),
            annotations=annotations,
            icons=icons,
            meta=meta,
            structured_output=structured_output,
        )

    def add_prompt(self, prompt: Prompt) -> None:
        """Register ``prompt`` as the SDK does, its description dedented."""
        super().add_prompt(prompt.model_copy(update={"description": inspect.cleandoc(prompt.description or "")}))

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[LifespanT, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        """Get a prompt as the SDK does, but refuse an unknown name or a missing argument as -32602, saying which.

        The SDK raises ``ValueError`` there: code 0 for 2025 clients, a bare -32603 "Internal server error" at 2026.
        """
        known = {prompt.name: prompt for prompt in await self.list_prompts()}
        if name not in known:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name}")
        given = arguments or {}
        missing = [arg.name for arg in known[name].arguments or [] if arg.required and arg.name not in given]
        if missing:
            raise MCPError(INVALID_PARAMS, f"Missing required arguments: {', '.join(missing)}")
        return await super().get_prompt(name, arguments, context)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[LifespanT, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call a tool as ``_checked_call`` does, its text content and error text passed through ``visible``.

        Hosts draw tool text in terminals (Claude Code) and chat views; a model's reply or a caller's name may
        hold escape sequences. Structured content keeps the exact data.
        """
        try:
            result = await self._checked_call(name, arguments, context)
        except ToolError as exc:
            shown = visible(str(exc))
            if shown == str(exc):
                raise
            raise type(exc)(shown) from exc.__cause__
        if isinstance(result, CallToolResult):
            return result.model_copy(update={"content": [_visible_block(block) for block in result.content]})
        return result

    async def _checked_call(
        self, name: str, arguments: dict[str, Any], context: Context[LifespanT, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call a tool as the SDK does, but refuse invalid arguments (text with a NUL or a lone surrogate, a name the
        tool does not take) one line per problem, not as a pydantic dump, a crash or silence, before the tool runs."""
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = tool.parameters.get("properties", {})
            if problems := text_problems(name, arguments) or unknown_arguments(name, arguments, known):
                raise ToolError(problems)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            raise ToolError(argument_problems(name, cause)) from cause


def _visible_block(block: ContentBlock) -> ContentBlock:
    """A text block with its text through ``visible``; any other block as it is."""
    if isinstance(block, TextContent):
        return block.model_copy(update={"text": visible(block.text)})
    return block
