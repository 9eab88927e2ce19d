"""Helpers for reading MCP tool results in tests and benchmarks."""

from __future__ import annotations

from mcp.types import CallToolResult, TextContent


def text_of(result: CallToolResult) -> str:
    """All text blocks of ``result`` joined by newlines (the part a host shows a person)."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))
