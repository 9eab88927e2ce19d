"""Streamable HTTP through a real MCP client: loopback by default, Host checks, the bearer token, the bind policy."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import sys
import warnings
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import ByteReceiveStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import LoggingMessageNotificationParams, TextResourceContents
from pydantic import SecretStr

from subagent_mcp.backends.scripted import Reply, ScriptedBackend, sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject, SubagentResult
from subagent_mcp.errors import ConfigError, ModelRequestError
from subagent_mcp.http_app import claude_add_command, is_loopback, serve_http, transport_security
from subagent_mcp.logs import install_redaction
from subagent_mcp.mcp_server import create_server
from subagent_mcp.role_catalog import RoleCatalog
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

TOKEN = "http-token-SECRET-0123456789abcdef"
SCRIPT = Path(sys.executable).with_name("subagent-mcp")
MCP_POST_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
DISCOVER = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}


def settings(**overrides: object) -> Settings:
    return Settings.from_env({}, env_file=None, **overrides)


@dataclass
class ClosingBackend(ScriptedBackend):
    """A scripted backend that records whether the service closed it (the lifespan's exit)."""

    closed: bool = False

    async def aclose(self) -> None:
        self.closed = True


@asynccontextmanager
async def serving(
    s: Settings, host: str = "127.0.0.1", *, allow_remote: bool = False, reply: Reply | None = None
) -> AsyncGenerator[tuple[str, ClosingBackend]]:
    """Run ``serve_http`` on a free port for the block; yield its loopback URL and the scripted backend."""
    backend = ClosingBackend(reply)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            port = await tg.start(partial(serve_http, create_server(s, backend), s, host, 0, allow_remote=allow_remote))
        yield f"http://127.0.0.1:{port}/mcp", backend
        tg.cancel_scope.cancel()


async def run_a_subagent(client: Client) -> SubagentResult:
    with anyio.fail_after(10):
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("run_subagent", {"role": "writer", "instructions": "Write a haiku about DAGs"})
    assert {"plan_task", "run_subagent", "execute_plan", "synthesize"} <= tools
    assert not result.is_error, text_of(result)
    return SubagentResult.model_validate(result.structured_content)


async def test_tools_are_listed_and_run_subagent_runs_over_http_on_loopback() -> None:
    async with serving(settings()) as (url, backend), Client(url) as client:
        result = await run_a_subagent(client)
        assert not backend.closed
    assert result.status == "succeeded"
    assert len(backend.seen) == 1  # the call reached the service the app's lifespan opened...
    assert backend.closed  # ...and stopping the server ran the lifespan's exit, which closed it


async def test_a_reply_holding_a_lone_surrogate_reaches_the_http_client_as_parseable_json() -> None:
    scripted = ['{"summary": "bad \\udcff", "text": "t"}']  # a JSON escape: valid JSON, unencodable as UTF-8

    def reply(request: CompletionRequest) -> str | JsonObject:
        return scripted.pop() if scripted else sample_for_schema(request.output_schema)

    async with serving(settings(), reply=reply) as (url, _), Client(url) as client:
        first = await run_a_subagent(client)
        second = await run_a_subagent(client)
    assert first.output == {"summary": "bad \ufffd", "text": "t"}
    assert second.status == "succeeded"


async def test_with_a_token_the_mcp_client_that_sends_it_works() -> None:
    async with (
        serving(settings(http_token=TOKEN)) as (url, backend),
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await run_a_subagent(client)
    assert result.status == "succeeded"
    assert len(backend.seen) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["no-token", "wrong-token", "wrong-scheme"],
)
async def test_with_a_token_a_request_without_it_gets_a_401_saying_a_token_is_needed_and_where_it_is_set(
    headers: dict[str, str],
) -> None:
    async with serving(settings(http_token=TOKEN)) as (url, backend), httpx2.AsyncClient(timeout=10) as http:
        with anyio.fail_after(10):
            response = await http.post(url, json=DISCOVER, headers={**MCP_POST_HEADERS, **headers})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] in ("invalid_request", "invalid_token")
    assert "requires 'Authorization: Bearer <token>'" in body["error_description"]
    assert "SUBAGENT_MCP_HTTP_TOKEN" in body["error_description"]
    assert '--header "Authorization: Bearer <token>"' in body["error_description"]
    assert TOKEN not in response.text
    assert "wrong-token" not in response.text
    assert "server" not in response.headers
    assert backend.seen == []


async def test_a_2025_client_over_http_keeps_the_log_level_it_set_for_its_session() -> None:
    def fetch_fails(request: CompletionRequest) -> JsonObject:
        if request.label == "fetch":
            raise ModelRequestError("Anthropic API rejected the request (400 invalid_request_error): nope")
        return sample_for_schema(request.output_schema)

    logs: list[tuple[str, object]] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append((params.level, params.data))

    steps = [{"id": i, "role": "writer", "instructions": f"do {i}", "depends_on": []} for i in ("fetch", "other")]
    async with (
        serving(settings(), reply=fetch_fails) as (url, _),
        Client(url, mode="legacy", logging_callback=on_log) as client,
    ):
        with anyio.fail_after(10):
            with warnings.catch_warnings():  # logging/setLevel is deprecated (gone at 2026-07-28)
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.set_logging_level("warning")  # pyright: ignore[reportDeprecated]
            await client.call_tool("execute_plan", {"plan": {"plan_id": "p", "task": "t", "subtasks": steps}})
    assert [level for level, _ in logs] == ["warning"]
    assert str(logs[0][1]).startswith("fetch failed: Anthropic API rejected")


async def test_a_foreign_host_header_is_refused_on_the_default_loopback_bind() -> None:
    async with serving(settings()) as (url, _), httpx2.AsyncClient(timeout=10) as http:
        with anyio.fail_after(10):
            response = await http.post(url, json=DISCOVER, headers={**MCP_POST_HEADERS, "Host": "evil.example"})
    assert response.status_code in (421, 403)


@pytest.mark.parametrize(
    ("token", "allow_remote", "says"),
    [
        (None, False, ["--allow-remote", "SUBAGENT_MCP_HTTP_TOKEN"]),
        (TOKEN, False, ["--allow-remote"]),
        (None, True, ["SUBAGENT_MCP_HTTP_TOKEN"]),
    ],
    ids=["neither", "token-only", "opt-in-only"],
)
async def test_a_non_loopback_bind_needs_both_the_opt_in_and_a_token(
    token: str | None, allow_remote: bool, says: list[str]
) -> None:
    s = settings(http_token=token)
    with socket.create_server(("127.0.0.1", 0)) as held:  # were it to bind first, this port would be "in use"
        port = held.getsockname()[1]
        with pytest.raises(ConfigError, match=re.escape("refusing to serve HTTP on 0.0.0.0")) as caught:
            await serve_http(create_server(s, ScriptedBackend()), s, "0.0.0.0", port, allow_remote=allow_remote)
    message = str(caught.value)
    assert all(hint in message for hint in says)
    assert TOKEN not in message


async def test_a_wildcard_bind_with_opt_in_and_token_serves_token_holders_only() -> None:
    s = settings(http_token=TOKEN)
    async with serving(s, "0.0.0.0", allow_remote=True) as (url, backend):
        async with httpx2.AsyncClient(timeout=10) as anonymous:
            with anyio.fail_after(10):
                refused = await anonymous.post(url, json=DISCOVER, headers=MCP_POST_HEADERS)
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await run_a_subagent(client)
    assert refused.status_code == 401
    assert result.status == "succeeded"
    assert len(backend.seen) == 1


async def test_a_port_in_use_is_a_one_line_config_error() -> None:
    s = settings()
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        with pytest.raises(
            ConfigError, match=re.escape(f"cannot listen on 127.0.0.1:{port}: the port is already in use")
        ):
            await serve_http(create_server(s, ScriptedBackend()), s, "127.0.0.1", port)


async def test_a_short_token_is_refused_before_serving() -> None:
    s = settings(http_token="short")
    with pytest.raises(ConfigError, match="SUBAGENT_MCP_HTTP_TOKEN is too short"):
        await serve_http(create_server(s, ScriptedBackend()), s, "127.0.0.1", 0)


def test_loopback_means_loopback_addresses_and_localhost_only() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.7", "myhost.lan", "localhost.evil.example"]))


def test_host_checks_follow_the_bind_address() -> None:
    loopback = transport_security("127.0.0.1")
    assert loopback.enable_dns_rebinding_protection
    assert {"127.0.0.1:*", "localhost:*", "[::1]:*"} <= set(loopback.allowed_hosts)
    named = transport_security("192.0.2.7")
    assert named.enable_dns_rebinding_protection
    assert set(named.allowed_hosts) == {"192.0.2.7:*", "192.0.2.7"}
    assert transport_security("::").enable_dns_rebinding_protection is False  # any name reaches it: token only
    assert "[fe80::1]:*" in transport_security("fe80::1").allowed_hosts


def test_the_token_stays_out_of_repr_logs_and_the_printed_command() -> None:
    s = settings(http_token=TOKEN)
    assert isinstance(s.http_token, SecretStr)
    assert TOKEN not in repr(s)
    assert TOKEN not in str(s)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction(s)
        logging.getLogger("subagent_mcp.test_http").warning("got Authorization: Bearer %s", TOKEN)
    finally:
        root.removeHandler(handler)
        install_redaction(settings())
    assert TOKEN not in stream.getvalue()
    assert "[redacted]" in stream.getvalue()
    command = claude_add_command("http://127.0.0.1:8765/mcp", with_token=True)
    assert command == (
        "claude mcp add --transport http --scope user subagents http://127.0.0.1:8765/mcp "
        '--header "Authorization: Bearer $SUBAGENT_MCP_HTTP_TOKEN"'
    )


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment for the console script: no inherited key or token, its database under ``tmp_path``."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    private = {"XDG_DATA_HOME": str(tmp_path / "data"), "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db")}
    return {**keep, **private, "SUBAGENT_MCP_ALLOW_REMOTE_MODEL": "0", **extra}


@pytest.mark.subprocess
async def test_the_cli_refuses_a_remote_bind_with_one_clear_line(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        done = await anyio.run_process(
            [str(SCRIPT), "serve", "--http", "--host", "0.0.0.0"], env=cli_env(tmp_path), cwd=tmp_path, check=False
        )
    stderr = done.stderr.decode()
    assert done.returncode == 2
    assert done.stdout == b""
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "refusing to serve HTTP on 0.0.0.0" in stderr
    assert "--allow-remote" in stderr
    assert "SUBAGENT_MCP_HTTP_TOKEN" in stderr


async def read_until(stream: ByteReceiveStream, marker: bytes) -> bytes:
    """Everything ``stream`` sends up to and including the line that holds ``marker``."""
    seen = b""
    while marker not in seen or not seen.endswith(b"\n"):
        try:
            seen += await stream.receive()
        except anyio.EndOfStream:
            pytest.fail(f"the process ended before printing {marker!r}; its stderr:\n{seen.decode()}")
    return seen


@pytest.mark.subprocess
async def test_the_cli_serves_http_prints_the_url_and_claude_command_and_stops_on_sigint(tmp_path: Path) -> None:
    env = cli_env(tmp_path, SUBAGENT_MCP_HTTP_TOKEN=TOKEN)
    command = [str(SCRIPT), "serve", "--demo", "--http", "--port", "0"]
    async with await anyio.open_process(command, env=env, cwd=tmp_path) as process:
        assert process.stderr is not None
        with anyio.fail_after(20):
            banner = (await read_until(process.stderr, b"claude mcp add")).decode()
        url = next(word for word in banner.split() if word.startswith("http://127.0.0.1:"))
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            with anyio.fail_after(10):
                tools = {t.name for t in (await client.list_tools()).tools}
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            rest = b"".join([chunk async for chunk in process.stderr]).decode()
            returncode = await process.wait()
    assert "run_subagent" in tools
    assert url.endswith("/mcp")
    assert f"serving MCP over streamable HTTP at {url}" in banner
    assert "Demo mode is on: a scripted backend answers, no model is called" in banner  # started with --demo
    assert claude_add_command(url, with_token=True) in banner
    assert returncode == 0
    assert "Traceback" not in banner + rest
    assert TOKEN not in banner + rest


async def roles_listed(url: str) -> tuple[RoleCatalog, str, str]:
    """list_roles (structured and text) and subagent://roles, read by an HTTP client carrying the token."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        with anyio.fail_after(10):
            listed = await client.call_tool("list_roles", {})
            contents = (await client.read_resource("subagent://roles")).contents[0]
    assert isinstance(contents, TextResourceContents)
    return RoleCatalog.model_validate(listed.structured_content), text_of(listed), contents.text


async def roles_under_a_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> tuple[Path, RoleCatalog, str, str]:
    """Serve on ``host`` with agent files in ``~/.claude/agents`` (one of them broken); the home and the listings."""
    home = tmp_path / "alice"
    folder = home / ".claude" / "agents"
    folder.mkdir(parents=True)
    (folder / "reviewer.md").write_text("---\nname: reviewer\ndescription: Reviews.\n---\nYou review.\n", "utf-8")
    (folder / "broken.md").write_text("---\nname: broken\n---\nno description\n", "utf-8")
    monkeypatch.setenv("HOME", str(home))
    s = settings(http_token=TOKEN, agent_dirs=[str(folder)])
    async with serving(s, host, allow_remote=not is_loopback(host)) as (url, _):
        return (home, *await roles_listed(url))


async def test_remote_http_clients_see_agent_files_under_the_home_folder_as_tilde_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, catalog, text, resource = await roles_under_a_home(tmp_path, monkeypatch, "0.0.0.0")
    assert {r.name: r.source for r in catalog.roles}["reviewer"] == "~/.claude/agents/reviewer.md"
    assert [s.path for s in catalog.skipped] == ["~/.claude/agents/broken.md"]
    assert [d.path for d in catalog.agent_dirs] == ["~/.claude/agents"]
    assert "~/.claude/agents/broken.md: no description" in text
    assert str(home) not in text
    assert str(home) not in resource


async def test_loopback_http_clients_see_agent_files_full_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, catalog, _, resource = await roles_under_a_home(tmp_path, monkeypatch, "127.0.0.1")
    source = {r.name: r.source for r in catalog.roles}["reviewer"]
    assert source == str(home / ".claude" / "agents" / "reviewer.md")
    assert RoleCatalog.model_validate_json(resource) == catalog
