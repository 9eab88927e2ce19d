"""The offline demo backend as a first-time user meets it: any plan size, no key, every output labelled."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.contracts import OrchestrateResult
from subagent_mcp.demo import DEMO_LABEL, demo_reply
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio


def demo_server() -> Any:
    return create_server(Settings.from_env({}, env_file=None, demo=True), ScriptedBackend(demo_reply))


@pytest.mark.parametrize("max_subtasks", [1, 2, 3, 4, 12])
async def test_orchestrate_in_demo_mode_plans_within_the_max_subtasks_it_is_given(max_subtasks: int) -> None:
    async with Client(demo_server()) as c:
        result = await c.call_tool("orchestrate", {"task": "Pick a database", "max_subtasks": max_subtasks})
    assert not result.is_error, text_of(result)
    out = OrchestrateResult.model_validate(result.structured_content)
    assert 1 <= len(out.plan.subtasks) <= max_subtasks
    assert out.report.status == "succeeded"
    assert all(s.instructions.startswith(DEMO_LABEL) for s in out.plan.subtasks)
