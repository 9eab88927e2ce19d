"""The MCP Inspector (its CLI mode) lists what the server offers, and `mcp dev` finds the server object."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer

ROOT = Path(__file__).resolve().parents[1]
SERVER_FILE = ROOT / "server" / "subagent_mcp" / "server.py"
LOCAL_INSPECTOR = ROOT / ".cache" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
INSTALL_HINT = "npm install --prefix .cache/inspector @modelcontextprotocol/inspector"


def inspector_command() -> list[str]:
    """The Inspector's CLI: the copy .ci/run installs, else skip saying why (tests never download it)."""
    if shutil.which("npx") is None:
        pytest.skip("npx is not installed, so the MCP Inspector cannot run here")
    if not LOCAL_INSPECTOR.exists():
        pytest.skip(f"the MCP Inspector is not installed locally (tests never download it); run: {INSTALL_HINT}")
    return [str(LOCAL_INSPECTOR), "--cli"]


def inspect(method: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    env["SUBAGENT_MCP_DEMO"] = "1"
    env["SUBAGENT_MCP_DB_PATH"] = ":memory:"
    completed = subprocess.run(
        [*inspector_command(), sys.executable, str(SERVER_FILE), "--method", method],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout)


@pytest.mark.subprocess
def test_the_inspector_cli_lists_every_tool() -> None:
    names = {tool["name"] for tool in inspect("tools/list")["tools"]}
    assert names == {
        "plan_task",
        "run_subagent",
        "execute_plan",
        "synthesize",
        "orchestrate",
        "list_runs",
        "resume_run",
    }


@pytest.mark.subprocess
def test_the_inspector_cli_lists_the_runs_resource_and_templates() -> None:
    assert [r["uri"] for r in inspect("resources/list")["resources"]] == ["subagent://runs"]
    templates = {t["uriTemplate"] for t in inspect("resources/templates/list")["resourceTemplates"]}
    assert templates == {"subagent://runs/{run_id}", "subagent://plans/{plan_id}"}


@pytest.mark.subprocess
def test_the_inspector_cli_lists_the_delegate_prompt() -> None:
    assert [prompt["name"] for prompt in inspect("prompts/list")["prompts"]] == ["delegate"]


def test_mcp_dev_finds_a_module_level_server_object_without_doing_io() -> None:
    spec = importlib.util.spec_from_file_location("server_module", SERVER_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.server, MCPServer)
