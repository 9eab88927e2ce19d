"""The roles as MCP sees them: the ``list_roles`` tool and the ``subagent://roles`` resource, the same catalog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations

from .mcp_common import ServiceContext, service_of, structured
from .role_catalog import RoleCatalog, catalog_text, with_home_as_tilde
from .service import Service


def register_roles(server: MCPServer[Service], current: Callable[[], Service], remote: Callable[[], bool]) -> None:
    """Add list_roles and subagent://roles; ``current`` returns the live service (resources get no Context).

    While ``remote()`` (HTTP on a non-loopback address), paths show the home folder as ``~``.
    """

    def shown(catalog: RoleCatalog) -> RoleCatalog:
        return with_home_as_tilde(catalog, Path.home()) if remote() else catalog

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_roles(ctx: ServiceContext) -> Annotated[CallToolResult, RoleCatalog]:
        """List the roles plan_task and run_subagent can use: built-in and from agent files, with model and tools.

        Also lists the agent files that were skipped and why, and the folders searched.
        """
        catalog = shown(service_of(ctx).list_roles())
        return structured(catalog, catalog_text(catalog))

    @server.resource("subagent://roles", name="roles", title="Roles", mime_type="application/json")
    async def roles() -> str:
        """Every role (name, description, source file or built-in, model, tools) and the skipped agent files."""
        return shown(current().list_roles()).model_dump_json(indent=1)
