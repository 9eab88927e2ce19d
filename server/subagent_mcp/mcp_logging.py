"""MCP log messages as each protocol era allows: the ``logging`` capability, ``logging/setLevel``, the level.

Handshake-era clients (2025-11-25 and before) choose a minimum level with ``logging/setLevel``; until
one does, the spec lets the server decide, and it sends ``info`` and above. At 2026-07-28 there is no
``logging/setLevel``: the SDK sends a request's messages only if that request opted in through
``_meta`` (``Client(log_level=...)``), at the level it asked for.
"""

from __future__ import annotations

from typing import Any, get_args

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.types import EmptyResult, LoggingLevel, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)
"""The MCP (RFC 5424) levels, least severe first."""

DEFAULT_LEVEL: LoggingLevel = "info"
"""What a handshake-era client gets before it sends ``logging/setLevel``."""

_LEVEL_KEY = "subagent_mcp.log_level"


def serve_set_level(server: MCPServer[Any]) -> None:
    """Answer ``logging/setLevel`` on handshake-era connections, which also declares the ``logging`` capability.

    The SDK's ``MCPServer`` has no public hook for this method; its lowlevel server's
    ``add_request_handler`` is the way the SDK documents for re-providing it to legacy clients.
    """

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        state = _connection_state(ctx.session)
        if state is not None:
            state[_LEVEL_KEY] = params.level
        return EmptyResult()

    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)


def client_wants(session: ServerSession, level: LoggingLevel) -> bool:
    """Whether this connection's client is to receive a message at ``level``.

    At 2026-07-28 the SDK applies the request's own opt-in, so this says yes and leaves it to the SDK.
    """
    if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return True
    state = _connection_state(session)
    minimum: LoggingLevel = state.get(_LEVEL_KEY, DEFAULT_LEVEL) if state is not None else DEFAULT_LEVEL
    return LEVELS.index(level) >= LEVELS.index(minimum)


def _connection_state(session: ServerSession) -> dict[str, Any] | None:
    """The connection's scratch state, which outlives one request; the SDK offers no public path to it."""
    connection = getattr(session, "_connection", None)
    return connection.state if isinstance(connection, Connection) else None
