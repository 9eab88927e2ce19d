"""The module-level server object for ``mcp dev server/subagent_mcp/server.py`` and ``mcp run``.

Building it reads settings but opens nothing; the lifespan does that when a client connects.
"""

from __future__ import annotations

from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings

server = create_server(Settings.from_env())

if __name__ == "__main__":
    server.run()
