"""The SDK's ``MCPServer`` as hosts should meet it: tool and prompt descriptions without source indentation.

The fix holds for every tool and prompt registered on it, so no tool has to remember it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.types import Icon, ToolAnnotations

LifespanT = TypeVar("LifespanT")


class SubagentServer(MCPServer[LifespanT]):
    """``MCPServer`` whose tool and prompt descriptions are dedented docstrings (``inspect.cleandoc``)."""

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
        super().add_prompt(prompt.model_copy(update={"description": inspect.cleandoc(prompt.description or "")}))
