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

WEB_SEARCH_RESULT_TOKENS = 15_000
"""Input tokens the budget allows for one web search's result page, which no request parameter bounds.

The API bills search results as input ("Web search results retrieved throughout a conversation are counted as
input tokens, in search iterations executed during a single turn and in subsequent conversation turns":
https://docs.claude.com/en/docs/agents-and-tools/tool-use/web-search-tool, "Usage and pricing"); that page's own
example of one search bills 14,573 input tokens (105 + 7,123 cache reads + 7,345 cache writes) for a one-line
question, so 15,000 covers a search's results as a worst case."""


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


def worst_case_content_tokens(server_tools: Mapping[str, int], fetch_max_content_tokens: int) -> int:
    """The most input tokens one message's searches and fetches add: ``max_uses`` of each at its allowance.

    A fetch is bounded by the ``max_content_tokens`` sent with the tool (approximately, and not for binary
    content such as PDFs, says the SDK); a search by ``WEB_SEARCH_RESULT_TOKENS``. A paused turn's next message
    re-reads what earlier ones fetched: ``anthropic.py`` measures that and the budget reserves it on top.
    """
    fetches = server_tools.get("web_fetch", 0) * fetch_max_content_tokens
    return fetches + server_tools.get("web_search", 0) * WEB_SEARCH_RESULT_TOKENS
