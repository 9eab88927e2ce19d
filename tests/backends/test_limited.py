"""The process-wide gate on model calls: slots per attempt, a retry waits without one, 429s slow the pool.

The gate's own tests use plain tasks; the rest run the real Anthropic backend against the fake API.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from subagent_mcp.backends.anthropic import AnthropicBackend
from subagent_mcp.backends.limited import AdaptiveLimiter, LimitedBackend, limited
from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.contracts import CompletionRequest, JsonObject, ModelMessage
from subagent_mcp.core.concurrency import AimdController
from subagent_mcp.errors import ModelUnavailableError
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, error_reply, json_reply, serve_fake_anthropic

pytestmark = pytest.mark.anyio

SCHEMA: JsonObject = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def request(text: str) -> CompletionRequest:
    return CompletionRequest(
        model="claude-haiku-5-5",
        system="Answer in JSON.",
        messages=[ModelMessage(role="user", content=text)],
        output_schema=SCHEMA,
        label=text,
    )


def settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> Settings:
    values: dict[str, Any] = {"anthropic_api_key": SecretStr("sk-ant-test"), "anthropic_base_url": base_url}
    return Settings(**{**values, **overrides})


async def test_calls_beyond_the_limit_wait_and_a_retry_goes_ahead_of_first_attempts() -> None:
    gate = AdaptiveLimiter(AimdController(ceiling=1))
    order: list[str] = []

    async def call(name: str, retry: bool) -> None:
        async with gate.call() as model_call:
            if retry:
                model_call.refused()  # as after a 429
            async with model_call.attempt():
                order.append(name)

    async with gate.slot() as held, anyio.create_task_group() as tg:
        for name, retry in (("first", False), ("second", False), ("retry", True)):
            tg.start_soon(call, name, retry)
            await anyio.wait_all_tasks_blocked()
        assert (gate.waiting, order) == (3, [])
        held.succeeded()
    assert order == ["retry", "first", "second"]
    assert gate.controller.in_flight == 0


async def test_a_waiter_cancelled_in_line_leaves_no_slot_taken() -> None:
    gate = AdaptiveLimiter(AimdController(ceiling=1))
    async with gate.slot(), anyio.create_task_group() as tg:
        tg.start_soon(lambda: gate.slot().__aenter__())
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert (gate.waiting, gate.controller.in_flight) == (0, 0)
    async with gate.slot():  # the only slot is free again
        pass


async def test_no_call_starts_before_a_retry_after_has_passed() -> None:
    gate = AdaptiveLimiter(AimdController(ceiling=4))
    async with gate.slot() as slot:
        slot.overloaded(retry_after_s=0.05)
    paused_until = gate.controller.paused_until
    async with gate.slot():
        assert gate.clock() >= paused_until
    assert gate.controller.cuts == 1


async def test_a_retry_waits_for_its_turn_without_holding_its_slot() -> None:
    a_sent, retry_may_go = anyio.Event(), anyio.Event()

    async def retry_sleep(delay: float) -> None:  # A's retry waits until B has reached the API
        await retry_may_go.wait()

    def reply(req: FakeRequest) -> FakeReply:
        if req.user_text == "A" and not a_sent.is_set():
            a_sent.set()
            return error_reply(503)
        if req.user_text == "B":
            retry_may_go.set()
        return json_reply({"answer": req.user_text})

    async with serve_fake_anthropic(reply) as fake:
        gate = AdaptiveLimiter(AimdController(ceiling=1))
        async with AnthropicBackend(settings(fake.base_url), sleep=retry_sleep) as backend:
            backend.use_gate(gate)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(backend.complete, request("A"))
                    await a_sent.wait()
                    tg.start_soon(backend.complete, request("B"))
    assert [r.user_text for r in fake.requests] == ["A", "B", "A"]


async def test_a_rate_limit_that_outlasts_every_retry_still_fails_clearly_and_frees_its_slot() -> None:
    async with serve_fake_anthropic(lambda req: error_reply(429, "Number of requests exceeds your rate limit")) as fake:
        backend = limited(AnthropicBackend(settings(fake.base_url, max_retries=2, retry_max_wait_s=0)), settings())
        assert isinstance(backend, AnthropicBackend)  # gated per attempt, not wrapped whole
        with pytest.raises(ModelUnavailableError) as caught:
            await backend.complete(request("A"))
        await backend.aclose()
    assert str(caught.value).startswith("Anthropic API unavailable: rate limited (429) on all 3 attempts;")
    assert "lower max_concurrency or try again later" in str(caught.value)
    assert len(fake.message_requests) == 3


async def test_a_backend_that_cannot_take_the_gate_holds_one_slot_per_call_and_reports_overload() -> None:
    def script(req: CompletionRequest) -> JsonObject:
        raise ModelUnavailableError("Anthropic API unavailable: overloaded (529)", status_code=529)

    backend = limited(ScriptedBackend(script), settings(max_concurrency=8))
    assert isinstance(backend, LimitedBackend)
    with pytest.raises(ModelUnavailableError):
        await backend.complete(request("A"))
    assert (backend.gate.controller.cuts, backend.gate.controller.in_flight) == (1, 0)


def test_the_gate_takes_its_cap_and_mode_from_the_settings() -> None:
    gate = AdaptiveLimiter.from_settings(settings(max_concurrency=24, adaptive_concurrency=False))
    assert (gate.controller.ceiling, gate.controller.adaptive, gate.clock) == (24, False, time.monotonic)
