"""What hosts see of the protocol, in both eras: logging levels, tool and prompt descriptions, argument errors."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from mcp import Client

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings

pytestmark = pytest.mark.anyio

Mode = Literal["auto", "legacy"]


def server(backend: ScriptedBackend | None = None) -> Any:
    return create_server(Settings.from_env({}, env_file=None), backend or ScriptedBackend())


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_no_tool_or_prompt_description_keeps_its_source_indentation(mode: Mode) -> None:
    async with Client(server(), mode=mode) as c:
        tools = (await c.list_tools()).tools
        prompts = (await c.list_prompts()).prompts
    described = {t.name: t.description or "" for t in tools} | {p.name: p.description or "" for p in prompts}
    assert all(described.values()), [name for name, text in described.items() if not text]
    indented = {name: line for name, text in described.items() for line in text.splitlines() if line[:1].isspace()}
    assert indented == {}
    assert "\n\nSpends planner-model tokens only" in described["plan_task"]
