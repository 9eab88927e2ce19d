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


def inspect(method: str, *args: str, db: str = ":memory:") -> Any:
    """What the Inspector's CLI prints for one call: it starts the server, calls, and stops it again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    env["SUBAGENT_MCP_DEMO"] = "1"
    env["SUBAGENT_MCP_DB_PATH"] = db
    completed = subprocess.run(
        [*inspector_command(), sys.executable, str(SERVER_FILE), "--method", method, *args],
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
        "wait_run",
        "cancel_run",
        "list_roles",
    }


PLAN = {
    "plan_id": "p-inspector",
    "task": "Compare SQLite and Postgres",
    "subtasks": [
        {"id": "a", "role": "researcher", "instructions": "SQLite"},
        {"id": "b", "role": "analyst", "instructions": "Compare", "depends_on": ["a"]},
    ],
}


@pytest.mark.subprocess
def test_the_inspector_cli_gets_a_handle_and_the_run_is_resumable_and_waitable_after_its_server_stops(
    tmp_path: Path,
) -> None:
    """Each CLI call starts and stops a server: the run a handle names is stored interrupted, then finishes."""
    db = str(tmp_path / "runs.db")

    def call(tool: str, *args: str) -> Any:
        return inspect("tools/call", "--tool-name", tool, *(f"--tool-arg={a}" for a in args), db=db)

    started = call("execute_plan", f"plan={json.dumps(PLAN)}", "wait_s=0")
    run_id = started["structuredContent"]["run_id"]
    assert started["structuredContent"]["status"] == "running"
    assert f"wait_run(run_id='{run_id}')" in started["content"][0]["text"]
    stopped = call("wait_run", f"run_id={run_id}")
    assert stopped["structuredContent"]["status"] == "interrupted"
    assert f"resume_run(run_id='{run_id}')" in stopped["content"][0]["text"]
    resumed = call("resume_run", f"run_id={run_id}")
    assert resumed["structuredContent"]["status"] == "succeeded"
    waited = call("wait_run", f"run_id={run_id}")
    assert waited["structuredContent"] == resumed["structuredContent"]


@pytest.mark.subprocess
def test_the_inspector_cli_lists_the_runs_resource_and_templates() -> None:
    resources = {r["uri"]: r.get("mimeType") for r in inspect("resources/list")["resources"]}
    assert resources == {
        "subagent://runs": "application/json",
        "subagent://roles": "application/json",
        "ui://subagent-mcp/run": "text/html;profile=mcp-app",
    }
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
