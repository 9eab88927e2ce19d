"""A fake Anthropic Messages API: a real HTTP/1.1 server on 127.0.0.1 for tests, benchmarks and demos.

The real SDK talks to it through ``base_url``, so headers, status codes, retries and timeouts run on a
real socket. Replies come from a FIFO queue, then a handler, then a schema-valid default. With
``rate_limit_above=N`` it admits at most N messages at once and answers the rest 429 at once::

    async with serve_fake_anthropic() as fake:
        fake.enqueue(error_reply(429, retry_after_ms=5), json_reply({"answer": "42"}))
        ...  # AnthropicBackend(Settings(anthropic_base_url=fake.base_url, ...))
        assert len(fake.requests) == 2
"""

from __future__ import annotations

import inspect
import json
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from ..backends.scripted import sample_for_schema
from ..contracts import JsonObject, Usage
from ._batches import PREFIX as BATCHES_PREFIX
from ._batches import FakeBatches
from ._billing import Bill, bill, check_breakpoints, count_tokens
from ._bodies import send_padded, trickle
from ._http11 import CLOSED, parse_json_object, read_request, response_head
from ._server_tools import capped_fetches, fetched_tokens, offered_server_tools, search_blocks, tool_counts
from .exchange import FakeReply, FakeRequest, Handler, error_reply, json_reply, text_reply

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class FakeAnthropic:
    """The running fake: ``base_url``, every request seen, and what each answered message billed.

    Input is billed from the prompt's text (4 characters a token) with prompt caching (``_billing``).
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        api_key: str | None = None,
        rate_limit_above: int | None = None,
        rate_limit_retry_after_ms: float = 20.0,
    ) -> None:
        self.base_url = ""
        self.handler = handler
        self.api_key = api_key
        self.rate_limit_above = rate_limit_above
        """Admit at most this many ``/v1/messages`` at once; one more gets 429 (None: no limit)."""
        self.rate_limit_retry_after_ms = rate_limit_retry_after_ms
        self.admitted = 0
        """Messages the fake is working on: past the rate limit, their answer not yet sent."""
        self.rate_limited: list[FakeRequest] = []
        """Requests answered 429 by the rate limit (before the queue or the handler saw them)."""
        self.requests: list[FakeRequest] = []
        self.billed: list[Usage] = []
        self.answered: list[tuple[FakeRequest, Usage]] = []
        """Each answered message's request beside what it billed (the same usage as ``billed``)."""
        self.handler_errors: list[Exception] = []
        self.in_flight = 0
        self.max_in_flight = 0
        """Most ``/v1/messages`` requests the fake held at once (received, not yet answered)."""
        self.abandoned: list[int] = []
        """Indexes of requests whose client hung up before their reply's body was complete."""
        self._abandoned_changed = anyio.Event()
        self._queue: deque[FakeReply] = deque()
        self._connections = 0
        self.cached: set[str] = set()
        """Prompt prefixes written to the cache (per model), readable by later requests."""
        self.batches = FakeBatches(self._batch_message)
        """The Message Batches endpoints (``_batches``): batches created, held, and what they billed."""

    def enqueue(self, *replies: FakeReply) -> None:
        """Answer the next ``/v1/messages`` requests with ``replies``, in order, before the handler."""
        self._queue.extend(replies)

    @property
    def message_requests(self) -> list[FakeRequest]:
        return [r for r in self.requests if r.path == "/v1/messages"]

    @property
    def billed_usage(self) -> Usage:
        return sum(self.billed, Usage())

    async def wait_abandoned(self, count: int) -> None:
        """Return once ``count`` requests were abandoned by their client (see ``abandoned``)."""
        while len(self.abandoned) < count:
            await self._abandoned_changed.wait()

    def _abandon(self, request: FakeRequest) -> None:
        self.abandoned.append(request.index)
        self._abandoned_changed.set()
        self._abandoned_changed = anyio.Event()

    async def _run(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
            task_status.started(f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}")
            await listener.serve(self._serve_connection)

    async def _serve_connection(self, stream: SocketStream) -> None:
        buffer = bytearray()
        connection, self._connections = self._connections, self._connections + 1
        async with stream:
            try:
                while (parsed := await read_request(stream, buffer)) is not None:
                    method, path, headers, raw = parsed
                    body = parse_json_object(raw)
                    request = FakeRequest(len(self.requests), connection, method, path, headers, body)
                    self.requests.append(request)
                    keep_alive = await self._respond(stream, request)
                    if not keep_alive or headers.get("connection", "").lower() == "close":
                        return
            except CLOSED:
                return

    async def _respond(self, stream: SocketStream, request: FakeRequest) -> bool:
        if request.path.startswith(BATCHES_PREFIX):
            status, data = await self.batches.respond(request, self.base_url, self.api_key)
            head = response_head(status, {"request-id": f"req_fake_{request.index + 1:04d}"}, len(data), close=False)
            await stream.send(head + data)
            return True
        counted = request.path == "/v1/messages"
        if counted and self.rate_limit_above is not None and self.admitted >= self.rate_limit_above:
            self.rate_limited.append(request)
            limited = error_reply(
                429, "rate limit: too many requests in flight", retry_after_ms=self.rate_limit_retry_after_ms
            )
            return await self._answer(stream, request, limited)
        if counted:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.admitted += 1
        try:
            return await self._answer(stream, request, admitted=counted)
        finally:
            if counted:
                self.in_flight -= 1

    async def _answer(
        self, stream: SocketStream, request: FakeRequest, chosen: FakeReply | None = None, *, admitted: bool = False
    ) -> bool:
        """Send ``chosen`` (else the next reply); an admitted message leaves the rate limit before its answer goes."""
        prompt = bill(request.body, self.cached)  # looked up on arrival, like the API: a twin in flight misses
        try:
            reply = chosen if chosen is not None else await self._choose(request)
            if reply.delay_s:
                await anyio.sleep(reply.delay_s)
            if reply.action == "hang":
                await self._hang(stream, request)
        finally:
            if admitted:  # the client may send its next request as soon as it reads this answer
                self.admitted -= 1
        return await self._send(stream, request, prompt, reply)

    async def _hang(self, stream: SocketStream, request: FakeRequest) -> None:
        try:
            while await stream.receive():  # until the client closes: receive raises EndOfStream
                pass
        except CLOSED:
            self._abandon(request)
            raise

    async def _send(self, stream: SocketStream, request: FakeRequest, prompt: Bill, reply: FakeReply) -> bool:
        if reply.action == "disconnect":
            return False
        request_id = f"req_fake_{request.index + 1:04d}"
        headers = {"request-id": request_id, **reply.headers}
        if reply.status >= 400:
            error_type = _ERROR_TYPES.get(reply.status, "api_error" if reply.status >= 500 else "invalid_request_error")
            payload: JsonObject = {"type": "error", "error": {"type": error_type, "message": reply.error_message}}
            payload["request_id"] = request_id
        elif request.path == "/v1/messages/count_tokens":
            payload = {"input_tokens": count_tokens(request.body)}
        else:
            reply = replace(reply, blocks=capped_fetches(reply.blocks, request.body))
            usage = reply.usage or _usage(prompt, reply)
            payload = _message(request, reply, usage, prompt.write_ttl)
            if reply.action == "answer":
                self.billed.append(usage)
                self.answered.append((request, usage))
                self.cached.update(prompt.writes)
        data = json.dumps(payload).encode()
        if reply.action == "trickle" or reply.size or reply.gzip:
            whole = (
                await trickle(stream, reply.status, headers, reply.every_s)
                if reply.action == "trickle"
                else await send_padded(stream, reply.status, headers, data, size=reply.size, gzip=reply.gzip)
            )
            if not whole:
                self._abandon(request)
            return whole
        if reply.action == "cut_off":
            await stream.send(response_head(reply.status, headers, len(data), close=True) + data[: len(data) // 2])
            return False
        await stream.send(response_head(reply.status, headers, len(data), close=False) + data)
        return True

    async def _choose(self, request: FakeRequest) -> FakeReply:
        if request.method != "POST" or request.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return error_reply(404, f"{request.method} {request.path} is not served by the fake Messages API")
        if not request.api_key:
            return error_reply(401, "x-api-key header is required")
        if self.api_key is not None and request.api_key != self.api_key:
            return error_reply(401, "invalid x-api-key")
        if request.path == "/v1/messages/count_tokens":
            return FakeReply()
        problem = _check_body(request.body)
        if problem:
            return error_reply(400, problem)
        if self._queue:
            return self._queue.popleft()
        if self.handler is None:
            return _default_reply(request)
        try:
            reply = self.handler(request)
            return await reply if inspect.isawaitable(reply) else reply
        except Exception as exc:  # surfaced when the server stops; the client sees a plain 500
            self.handler_errors.append(exc)
            return error_reply(500, f"the fake's handler raised {type(exc).__name__}", should_retry=False)

    async def _batch_message(self, request: FakeRequest) -> tuple[FakeReply, JsonObject | None, Usage | None]:
        """One batch request answered as ``/v1/messages`` answers it: the reply, and its message and usage if billed."""
        prompt = bill(request.body, self.cached)
        reply = await self._choose(request)
        if reply.status >= 400 or reply.action != "answer":
            return reply, None, None
        reply = replace(reply, blocks=capped_fetches(reply.blocks, request.body))
        usage = reply.usage or _usage(prompt, reply)
        self.cached.update(prompt.writes)
        return reply, _message(request, reply, usage, prompt.write_ttl), usage


@asynccontextmanager
async def serve_fake_anthropic(
    handler: Handler | None = None,
    *,
    api_key: str | None = None,
    rate_limit_above: int | None = None,
    rate_limit_retry_after_ms: float = 20.0,
) -> AsyncGenerator[FakeAnthropic]:
    """Run a fake Messages API on a free loopback port for the duration of the block.

    With ``api_key`` set, requests carrying another key get a 401. With ``rate_limit_above`` set, a
    message arriving while that many are admitted gets 429 with ``retry-after-ms``, as a per-key
    concurrency limit answers. A handler that raised is re-raised when the block exits, so a broken
    script fails the test.
    """
    fake = FakeAnthropic(
        handler, api_key=api_key, rate_limit_above=rate_limit_above, rate_limit_retry_after_ms=rate_limit_retry_after_ms
    )
    async with anyio.create_task_group() as tg:
        fake.base_url = await tg.start(fake._run)
        try:
            yield fake
        finally:
            tg.cancel_scope.cancel()
    if fake.handler_errors:
        raise fake.handler_errors[0]


def _default_reply(request: FakeRequest) -> FakeReply:
    schema = request.schema
    reply = json_reply(sample_for_schema(schema)) if schema is not None else text_reply("fake reply")
    if "web_search" in offered_server_tools(request.body):  # the model searches once, as a researcher would
        reply = replace(reply, blocks=search_blocks(request.user_text[:60] or "query"))
    return reply


def _usage(prompt: Bill, reply: FakeReply) -> Usage:
    out = reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4)
    return Usage(
        input_tokens=prompt.input_tokens + fetched_tokens(reply.blocks),  # fetched pages are billed as input
        output_tokens=out,
        cache_read_tokens=prompt.cache_read_tokens,
        cache_write_tokens=prompt.cache_write_tokens,
        **tool_counts(reply.blocks),
    )


def _message(request: FakeRequest, reply: FakeReply, usage: Usage, write_ttl: str) -> JsonObject:
    return {
        "id": f"msg_fake_{request.index + 1:04d}",
        "type": "message",
        "role": "assistant",
        "model": request.model if reply.model is None else reply.model,
        "content": [*reply.blocks, *([{"type": "text", "text": reply.text}] if reply.text else [])],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        **({"stop_details": reply.stop_details} if reply.stop_details else {}),
        "usage": reply.raw_usage
        if reply.raw_usage is not None
        else {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": usage.cache_write_tokens if write_ttl == "5m" else 0,
                "ephemeral_1h_input_tokens": usage.cache_write_tokens if write_ttl == "1h" else 0,
            },
            **_server_tool_use(usage),
        },
    }


def _server_tool_use(usage: Usage) -> JsonObject:
    if not (usage.web_search_requests or usage.web_fetch_requests):
        return {}
    counts = {"web_search_requests": usage.web_search_requests, "web_fetch_requests": usage.web_fetch_requests}
    return {"server_tool_use": counts}


def _check_body(body: JsonObject) -> str:
    """The API's own checks that a client bug would trip: required fields, closed object schemas."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    schema = body.get("output_config", {}).get("format", {}).get("schema")
    if schema is not None and _open_object(schema):
        return "output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly set to false"
    return check_breakpoints(body)


def _open_object(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_open_object(s) for s in schema)
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        return True
    return any(_open_object(v) for k, v in schema.items() if k not in ("enum", "const", "default"))
