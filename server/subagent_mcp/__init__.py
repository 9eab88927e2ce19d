"""subagent-mcp: an MCP server that gives a host a team of Claude subagents."""

__version__ = "0.1.0"
