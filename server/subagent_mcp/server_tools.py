"""Which API server tools (web search, web fetch, code execution) a role's subagents are offered, and how often.

The tools run inside the subagent's own API call: the host and the planner only ever see its validated
JSON output. ``SUBAGENT_MCP_SERVER_TOOLS=off`` offers none to any role.
"""

from __future__ import annotations

from collections.abc import Mapping

from .roles import Role
from .settings import Settings

SERVER_TOOLS = {
    "websearch": "web_search",
    "web_search": "web_search",
    "webfetch": "web_fetch",
    "web_fetch": "web_fetch",
    "code_execution": "code_execution",
    "codeexecution": "code_execution",
}
"""Tool names an agent file may list (Claude Code's or ours, any case) → the API's server tool."""

DEFAULT_MAX_USES = 5
"""Most uses of a server tool in one call when the role sets no ``max_uses``; also the budget's worst case."""


def server_tool_of(name: str) -> str | None:
    """The API server tool a listed tool name maps to (``WebSearch`` → ``web_search``), or None."""
    return SERVER_TOOLS.get(name.split("(", 1)[0].strip().lower())  # Claude Code allows patterns: Bash(git diff:*)


def role_server_tools(role: Role, settings: Settings) -> dict[str, int]:
    """The server tools a call for ``role`` offers, each with its most uses per call; none when turned off."""
    if not settings.server_tools:
        return {}
    tools: dict[str, int] = {}
    for name in role.tools:
        server = server_tool_of(name)
        if server is not None:
            tools[server] = role.max_uses.get(server, DEFAULT_MAX_USES)
    return tools


def worst_case_uses(server_tools: Mapping[str, int]) -> dict[str, int]:
    """Per ``Usage`` field, the most server-tool requests a call offering ``server_tools`` can bill."""
    return {
        "web_search_requests": server_tools.get("web_search", 0),
        "web_fetch_requests": server_tools.get("web_fetch", 0),
    }
