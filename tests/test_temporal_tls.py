"""TLS and API keys against a real Temporal dev server (plaintext, and it ignores API keys).

TLS on against it is a clear error that says to check the TLS setting (a tool error in the server, exit 2 for
``subagent-mcp worker``); an API key with TLS explicitly off runs plans, and the key shows nowhere; a wrong
certificate path is named before any connection is tried.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject, RunReport
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.temporal]

KEY = "sk-ant-test-temporal-tls"
TEMPORAL_KEY = "tmprl-test-api-key-3c1f9a7e52"
SCRIPT = Path(sys.executable).with_name("subagent-mcp")
PLAN: JsonObject = {
    "plan_id": "p-tls",
    "task": "One part",
    "subtasks": [{"id": "only", "role": "writer", "instructions": "the only part", "depends_on": []}],
}


async def replies(request: FakeRequest) -> FakeReply:
    return json_reply(sample_for_schema(request.schema or {}))


def worker_env(address: str, tmp_path: Path, **variables: str) -> dict[str, str]:
    """``subagent-mcp worker``'s environment: the dev server at ``address``, a task queue of the test's own."""
    return {
        **os.environ,
        "ANTHROPIC_API_KEY": KEY,
        "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
        "SUBAGENT_MCP_EXECUTOR": "temporal",
        "SUBAGENT_MCP_TEMPORAL_TASK_QUEUE": f"q-{tmp_path.name}"[:60],
        "SUBAGENT_MCP_TEMPORAL_CONNECT_S": "5",
        "SUBAGENT_MCP_LOG_LEVEL": "DEBUG",
        "TEMPORAL_ADDRESS": address,
        **variables,
    }


def server_settings(env: dict[str, str], base_url: str) -> Settings:
    """The settings a server given the worker's environment reads (its own fake Messages API)."""
    return Settings.from_env({**env, "ANTHROPIC_BASE_URL": base_url}, env_file=None)


async def worker_exit(env: dict[str, str]) -> tuple[int, str]:
    with anyio.fail_after(30):
        done = await anyio.run_process([str(SCRIPT), "worker"], env=env, check=False)
    return done.returncode, done.stderr.decode()


async def test_tls_on_against_a_plaintext_server_is_a_tool_error_saying_to_check_tls_and_the_server_still_serves(
    temporal_address: str, tmp_path: Path
) -> None:
    env = worker_env(temporal_address, tmp_path, TEMPORAL_TLS="true")
    async with (
        serve_fake_anthropic(replies, api_key=KEY) as fake,
        Client(create_server(server_settings(env, fake.base_url))) as c,
    ):
        with anyio.fail_after(30):
            result = await c.call_tool("execute_plan", {"plan": PLAN})
        runs = await c.call_tool("list_runs", {})
        roles = await c.call_tool("list_roles", {})
    assert result.is_error
    text = text_of(result)
    assert f"Temporal at {temporal_address}" in text
    assert "over TLS" in text
    assert "TEMPORAL_TLS=false" in text
    assert "Traceback" not in text
    assert runs.structured_content == {"runs": []}
    assert not roles.is_error
    assert fake.message_requests == []


async def test_a_worker_with_tls_on_against_a_plaintext_server_says_so_and_exits_2(
    temporal_address: str, tmp_path: Path
) -> None:
    code, stderr = await worker_exit(worker_env(temporal_address, tmp_path, TEMPORAL_API_KEY=TEMPORAL_KEY))
    assert code == 2, stderr
    assert f"Temporal at {temporal_address} (namespace 'default', TLS, API key) could not be reached over TLS" in stderr
    assert "Check the TLS setting" in stderr
    assert "Traceback" not in stderr
    assert TEMPORAL_KEY not in stderr
    assert KEY not in stderr


async def test_an_api_key_with_tls_off_runs_plans_on_the_dev_server_and_the_key_shows_nowhere(
    temporal_address: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = worker_env(temporal_address, tmp_path, TEMPORAL_API_KEY=TEMPORAL_KEY, TEMPORAL_TLS="false")
    log = tmp_path / "worker.log"
    async with serve_fake_anthropic(replies, api_key=KEY) as fake:
        settings = server_settings(env, fake.base_url)
        assert settings.temporal_api_key == SecretStr(TEMPORAL_KEY)
        with log.open("ab") as out:
            worker = await anyio.open_process(
                [str(SCRIPT), "worker"], env={**env, "ANTHROPIC_BASE_URL": fake.base_url}, stdout=out, stderr=out
            )
        try:
            async with Client(create_server(settings)) as c:
                with anyio.fail_after(30):
                    result = await c.call_tool("execute_plan", {"plan": PLAN})
                runs = await c.call_tool("list_runs", {})
        finally:
            worker.terminate()
            await worker.wait()
    report = RunReport.model_validate(result.structured_content)
    assert report.status == "succeeded"
    assert [r.subtask_id for r in fake.message_requests] == ["only"]
    shown: list[Any] = [
        text_of(result),
        result.structured_content,
        runs.structured_content,
        log.read_text(),
        caplog.text,
    ]
    assert [part for part in shown if TEMPORAL_KEY in str(part)] == []
    assert "worker polling task queue" in log.read_text()


async def test_a_missing_certificate_is_named_before_any_connection_is_tried(
    temporal_address: str, tmp_path: Path
) -> None:
    missing = tmp_path / "client.pem"
    env = worker_env(temporal_address, tmp_path, TEMPORAL_TLS_CLIENT_CERT_PATH=str(missing))
    env["TEMPORAL_TLS_CLIENT_KEY_PATH"] = str(tmp_path / "client.key")
    code, stderr = await worker_exit(env)
    assert code == 2, stderr
    assert f"TEMPORAL_TLS_CLIENT_CERT_PATH={missing}: no such file" in stderr
    assert "could not be reached" not in stderr  # a connection was never tried: it would have failed its TLS handshake
    async with (
        serve_fake_anthropic(replies, api_key=KEY) as fake,
        Client(create_server(server_settings(env, fake.base_url))) as c,
    ):
        result = await c.call_tool("execute_plan", {"plan": PLAN})
    assert result.is_error
    assert f"TEMPORAL_TLS_CLIENT_CERT_PATH={missing}: no such file" in text_of(result)
