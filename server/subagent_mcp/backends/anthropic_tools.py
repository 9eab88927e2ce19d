"""The server tool definitions sent to the Messages API: the one place naming their versioned SDK types.

When the SDK ships a newer version of a tool, change its type here (``anthropic.types.ToolUnionParam``
lists them all); nothing else in the package knows the dated names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

from anthropic.types import (
    CodeExecutionTool20260521Param,
    ContentBlockParam,
    Message,
    ServerToolUsage,
    ToolUnionParam,
    WebFetchTool20260318Param,
    WebSearchTool20260318Param,
)

WEB_SEARCH_TYPE: Final = "web_search_20260318"
WEB_FETCH_TYPE: Final = "web_fetch_20260318"
CODE_EXECUTION_TYPE: Final = "code_execution_20260521"


def tool_params(server_tools: Mapping[str, int], fetch_max_content_tokens: int) -> list[ToolUnionParam]:
    """The ``tools`` of a request offering ``server_tools`` (name → most uses; code execution takes no cap).

    web_fetch also carries ``max_content_tokens``, so what a fetch adds to the prompt has a bound the budget knows.
    """
    tools: list[ToolUnionParam] = []
    for name, uses in server_tools.items():
        if name == "web_search":
            search: WebSearchTool20260318Param = {"type": WEB_SEARCH_TYPE, "name": "web_search", "max_uses": uses}
            tools.append(search)
        elif name == "web_fetch":
            fetch: WebFetchTool20260318Param = {
                "type": WEB_FETCH_TYPE,
                "name": "web_fetch",
                "max_uses": uses,
                "max_content_tokens": fetch_max_content_tokens,
            }
            tools.append(fetch)
        elif name == "code_execution":
            code: CodeExecutionTool20260521Param = {"type": CODE_EXECUTION_TYPE, "name": "code_execution"}
            tools.append(code)
        else:
            raise ValueError(f"unknown server tool {name!r}; known: web_search, web_fetch, code_execution")
    return tools


def assistant_content(message: Message) -> list[ContentBlockParam]:
    """A paused reply's blocks (server_tool_use, results, text) as sent, to hand back so the API resumes the turn."""
    return [cast(ContentBlockParam, block.to_dict()) for block in message.content]


def server_tool_counts(used: ServerToolUsage | None) -> dict[str, object]:
    """``usage.server_tool_use`` as ``Usage`` fields; the values are checked by the caller, as the SDK does not."""
    if used is None:
        return {}
    return {
        "web_search_requests": getattr(used, "web_search_requests", 0) or 0,
        "web_fetch_requests": getattr(used, "web_fetch_requests", 0) or 0,
    }
