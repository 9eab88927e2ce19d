"""Fault and abuse of streamable HTTP over raw loopback sockets: the server answers or hangs up, and serves on.

Malformed JSON-RPC, wrong content types, oversized bodies, half-sent requests and abrupt closes each get a 4xx (or a
JSON-RPC error), never a 5xx or a traceback; after each, a plain ``tools/list`` still works.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from subagent_mcp.backends.scripted import ScriptedBackend, sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject
from subagent_mcp.http_app import serve_http
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings

pytestmark = pytest.mark.anyio

LIMIT_S = 15
"""Longest any one exchange may take; past it, the server hung (a test failure, not a stuck suite)."""
VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "raw-socket", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
MAX_BODY = 4 * 1024 * 1024
"""The SDK's default ``max_request_body_size``."""

settings.register_profile(
    "abuse-http",
    max_examples=int(os.environ.get("SUBAGENT_MCP_ABUSE_EXAMPLES", "12")) * 4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TALLY: Counter[str] = Counter()
"""Raw exchanges made, crashes (a 5xx, a traceback, a dead server) and hangs, printed at the end with ``-s``."""


@pytest.fixture(scope="module", autouse=True)
def tally() -> Iterator[Counter[str]]:
    yield TALLY
    print(f"\nabuse over raw HTTP sockets: {TALLY['cases']} cases, {TALLY['crashes']} crashes, {TALLY['hangs']} hangs")


# --- the server and raw requests ---------------------------------------------------------------------------------


class Held:
    """A scripted model that holds ``run_subagent`` calls open until cancelled, and says when one was."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()

    async def reply(self, request: CompletionRequest) -> JsonObject:
        if "hold" not in request.messages[0].content:
            return sample_for_schema(request.output_schema)
        self.started.set()
        try:
            await anyio.Event().wait()
        finally:
            self.cancelled.set()
        raise AssertionError("unreachable")


@asynccontextmanager
async def serving(held: Held) -> AsyncGenerator[int]:
    """``serve_http`` on a free loopback port for the block, with ``held`` as the model; yields the port."""
    s = Settings.from_env({}, env_file=None)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(LIMIT_S):
            port = await tg.start(partial(serve_http, create_server(s, ScriptedBackend(held.reply)), s, "127.0.0.1", 0))
        yield port
        tg.cancel_scope.cancel()


def rpc(method: str, params: JsonObject | None = None, id_: Any = 1) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": id_, "method": method, "params": {**(params or {}), "_meta": META}}
    ).encode()


def post(
    port: int,
    body: bytes,
    *,
    method: str = "tools/list",
    name: str | None = None,
    content_type: str | None = "application/json",
    length: int | None = None,
    extra: str = "",
) -> bytes:
    """A raw ``POST /mcp`` with the 2026 headers; ``length`` overrides Content-Length (to lie about it)."""
    head = [
        "POST /mcp HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Accept: application/json, text/event-stream",
        f"Mcp-Protocol-Version: {VERSION}",
        f"Mcp-Method: {method}",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
    ]
    head += [f"Content-Type: {content_type}"] if content_type is not None else []
    head += [f"Mcp-Name: {name}"] if name is not None else []
    return ("\r\n".join(head) + "\r\n" + extra + "\r\n").encode("latin-1") + body


async def exchange(port: int, raw: bytes, *, read: bool = True) -> bytes:
    """Send ``raw`` on a fresh connection; with ``read``, everything until the server closes; else hang up at once."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        with suppress(anyio.BrokenResourceError, OSError):  # the server answered early (a 413) and hung up: read it
            await stream.send(raw)
        if not read:
            return b""
        seen = b""
        try:
            while True:
                seen += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return seen


def status_of(reply: bytes) -> int | None:
    """The HTTP status of ``reply``, or None when the server closed without answering."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    return int(match.group(1)) if match else None


async def still_serving(port: int) -> None:
    """A plain ``tools/list`` on a new connection gets every tool."""
    reply = await exchange(port, post(port, rpc("tools/list")))
    assert status_of(reply) == 200, reply[:300]
    assert b'"run_subagent"' in reply
    assert b'"list_runs"' in reply


async def abuse(port: int, raw: bytes, *, read: bool = True) -> int | None:
    """Send one abusive request; fail on a hang, a 5xx, a traceback, or a server that no longer serves."""
    TALLY["cases"] += 1
    try:
        with anyio.fail_after(LIMIT_S):
            reply = await exchange(port, raw, read=read)
    except TimeoutError:
        TALLY["hangs"] += 1
        raise AssertionError(f"no answer or hang-up within {LIMIT_S} s to {raw[:200]!r}") from None
    status = status_of(reply)
    if (status is not None and status >= 500) or b"Traceback" in reply:
        TALLY["crashes"] += 1
        raise AssertionError(f"{raw[:200]!r} got {reply[:500]!r}")
    try:
        with anyio.fail_after(LIMIT_S):
            await still_serving(port)
    except (TimeoutError, AssertionError, OSError) as exc:
        TALLY["crashes"] += 1
        raise AssertionError(f"the server stopped serving after {raw[:200]!r}: {exc!r}") from exc
    return status


# --- the cases ---------------------------------------------------------------------------------------------------

CALL = {"name": "run_subagent", "arguments": {"role": "writer", "instructions": "x"}}
MALFORMED_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"123",
    b'"tools/list"',
    b"\xef\xbb\xbf{}",  # a BOM
    b"\xff\xfe\x00garbage",  # not UTF-8
    b'{"jsonrpc": "2.0"}',
    b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": 1e400, "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": ' + b"9" * 5000 + b', "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": 5}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1, 2]}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "no/such/method", "params": {}}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}}}}',
    b'{"jsonrpc": "2.0", "id": 1, "id": 2, "method": "tools/list"}',
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": "\\ud800"}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    json.dumps([json.loads(rpc("tools/list", id_=i)) for i in range(500)]).encode(),  # a batch: gone in 2025-06
    b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}',
    b'{"jsonrpc": "2.0", "id": 1, "result": {}}',  # a response nobody asked for
]
CALL_BODIES = [
    rpc("tools/call", {"name": "run_subagent", "arguments": "x"}),
    rpc("tools/call", {"name": "run_subagent", "arguments": [1, 2]}),
    rpc("tools/call", {"arguments": {}}),
    rpc("tools/call", {"name": "no_such_tool", "arguments": {}}),
    rpc("tools/call", {"name": "run_subagent", "arguments": {"role": "writer", "instructions": "x" * 3_000_000}}),
    rpc("tools/call", CALL).replace(b'"x"', b'"\\ud800"'),  # a lone surrogate escape
    rpc("tools/call", {"name": "list_runs", "arguments": {"limit": 1}}).replace(b'"limit": 1', b'"limit": NaN'),
    rpc("tools/call", {"name": "wait_run", "arguments": {"run_id": "r", "wait_s": 1}}).replace(
        b": 1}", b": -Infinity}"
    ),
]


async def test_malformed_json_rpc_bodies_get_a_4xx_or_an_error_and_the_server_serves_on() -> None:
    async with serving(Held()) as port:
        for body in MALFORMED_BODIES:
            status = await abuse(port, post(port, body))
            assert status is not None, f"no HTTP answer to {body[:100]!r}"
        for body in CALL_BODIES:
            name = str(json.loads(body.replace(b"NaN", b"0").replace(b"-Infinity", b"0"))["params"].get("name", ""))
            await abuse(port, post(port, body, method="tools/call", name=name))
        await abuse(port, post(port, rpc("tools/call", CALL), method="tools/call", name="list_runs"))  # wrong Mcp-Name
        await abuse(port, post(port, rpc("tools/call", CALL), method="tools/list", name="run_subagent"))  # wrong method


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
async def test_a_body_that_is_not_declared_json_gets_a_4xx(content_type: str | None) -> None:
    async with serving(Held()) as port:
        status = await abuse(port, post(port, rpc("tools/list"), content_type=content_type))
    assert status is not None
    assert 400 <= status < 500


async def test_oversized_and_lying_bodies_and_headers_are_refused_and_the_server_serves_on() -> None:
    big = rpc("tools/call", {"name": "run_subagent", "arguments": {"role": "writer", "instructions": "x" * MAX_BODY}})
    async with serving(Held()) as port:
        whole = post(port, big, method="tools/call", name="run_subagent")
        status = await abuse(port, whole[: whole.index(b"\r\n\r\n") + 4 + 65_536])  # the 413 comes before the rest
        assert status == 413
        await abuse(port, whole)  # all of it at once: the 413 may be lost to the reset, the server must not be
        await abuse(port, post(port, b"{}", length=10**12))  # says a terabyte follows, sends 2 bytes, hangs up
        await abuse(port, post(port, rpc("tools/list"), length=-1))
        await abuse(port, post(port, rpc("tools/list"), length=3))  # shorter than the body
        await abuse(port, post(port, rpc("tools/list"), extra="X-Big: " + "a" * 200_000 + "\r\n"))
        await abuse(port, post(port, rpc("tools/list"), extra="".join(f"X-H{i}: v\r\n" for i in range(5000))))
        chunked = post(port, b"", extra="Transfer-Encoding: chunked\r\n").replace(b"Content-Length: 0\r\n", b"")
        await abuse(port, chunked + b"fffffff\r\n" + b"{" * 1000, read=False)  # a chunk promised, never finished
        await abuse(port, post(port, b"{}", extra="Content-Length: 5\r\n"))  # two different lengths


async def test_half_sent_requests_garbage_and_abrupt_closes_leave_the_server_serving() -> None:
    async with serving(Held()) as port:
        whole = post(port, rpc("tools/list"))
        for cut in (1, 10, whole.index(b"\r\n\r\n"), len(whole) - 5):
            await abuse(port, whole[:cut], read=False)  # hung up mid-request
        await abuse(port, b"", read=False)  # connected, then closed
        for garbage in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/9.9\r\n\r\n",
            b"\r\n\r\n",
            b"\x00" * 64,
        ):
            await abuse(port, garbage)
        for method in ("GET", "PUT", "DELETE", "OPTIONS", "PATCH"):
            await abuse(port, f"{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        await abuse(port, f"GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())


async def test_a_client_hanging_up_mid_call_cancels_the_call_and_the_server_serves_on() -> None:
    held = Held()
    hold = {"name": "run_subagent", "arguments": {"role": "writer", "instructions": "hold"}}
    async with serving(held) as port:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(post(port, rpc("tools/call", hold), method="tools/call", name="run_subagent"))
            with anyio.fail_after(LIMIT_S):
                await held.started.wait()
        with anyio.fail_after(LIMIT_S):
            await held.cancelled.wait()  # the hang-up reached the tool as cancellation
            await still_serving(port)
        async with (
            Client(f"http://127.0.0.1:{port}/mcp") as auto,
            Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as legacy,
        ):
            with anyio.fail_after(LIMIT_S):
                for client in (auto, legacy):
                    assert "run_subagent" in {t.name for t in (await client.list_tools()).tools}
                    assert not (await client.call_tool("list_runs", {})).is_error


# --- generated bodies --------------------------------------------------------------------------------------------

VALID_CALL = rpc("tools/call", {"name": "list_runs", "arguments": {"limit": 3}})


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid ``tools/call`` body with a few bytes replaced, inserted or cut out; or JSON of any shape."""
    if draw(st.booleans()):
        return json.dumps(
            draw(
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8,
                )
            )
        ).encode()
    body = bytearray(VALID_CALL)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        how = draw(st.sampled_from(["replace", "insert", "cut"]))
        chunk = draw(
            st.binary(min_size=1, max_size=4)
            | st.sampled_from([b'"', b"{", b"}", b"[", b",", b":", b"\\", b"\\u", b"NaN", b"\xff"])
        )
        if how == "insert":
            body[at:at] = chunk
        elif how == "cut":
            del body[at : at + len(chunk)]
        else:
            body[at : at + len(chunk)] = chunk
    return bytes(body)


async def test_generated_bodies_never_get_a_5xx_and_never_stop_the_server() -> None:
    async with serving(Held()) as port:

        @settings.get_profile("abuse-http")
        @given(body=mangled())
        def examples(body: bytes) -> None:
            raw = post(port, body, method="tools/call", name="list_runs")
            anyio.from_thread.run(abuse, port, raw)

        await anyio.to_thread.run_sync(examples)
