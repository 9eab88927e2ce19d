"""The fake Message Batches API, driven by the real SDK: create, hold, poll, results as JSON Lines, cancel, refusals."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic

from subagent_mcp.core.pricing import DEFAULT_PRICES, cost_usd
from subagent_mcp.testing import error_reply, json_reply, serve_fake_anthropic

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-fake-batches"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def request(custom_id: str, text: str) -> Any:
    params = {
        "model": "claude-haiku-5-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    }
    return {"custom_id": custom_id, "params": params}


async def test_a_held_batch_stays_in_progress_and_once_released_ends_with_results_billed_at_half_price() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(json_reply({"answer": "one"}), error_reply(400, "bad request"))
        fake.batches.hold()
        async with AsyncAnthropic(api_key=KEY, base_url=fake.base_url, max_retries=0) as client:
            batch = await client.messages.batches.create(requests=[request("r1", "first"), request("r2", "second")])
            held = await client.messages.batches.retrieve(batch.id)
            fake.batches.release()
            ended = await client.messages.batches.retrieve(batch.id)
            results = {line.custom_id: line.result async for line in await client.messages.batches.results(batch.id)}

    assert (held.processing_status, held.request_counts.processing, held.results_url) == ("in_progress", 2, None)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 1)
    assert results["r1"].type == "succeeded"
    assert results["r2"].type == "errored"
    assert fake.message_requests == []  # batch requests are not live messages
    [(model, usage)] = fake.batches.billed
    assert fake.batches.billed_usd(DEFAULT_PRICES) == pytest.approx(cost_usd(usage, model, DEFAULT_PRICES) / 2)


async def test_cancel_ends_a_held_batch_with_every_request_canceled_and_nothing_billed() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.batches.hold()
        async with AsyncAnthropic(api_key=KEY, base_url=fake.base_url, max_retries=0) as client:
            batch = await client.messages.batches.create(requests=[request("r1", "first")])
            cancelled = await client.messages.batches.cancel(batch.id)
            results = [line.result.type async for line in await client.messages.batches.results(batch.id)]
    assert (cancelled.processing_status, cancelled.request_counts.canceled) == ("ended", 1)
    assert results == ["canceled"]
    assert fake.batches.billed == []


async def test_a_wrong_key_or_an_unknown_batch_is_refused() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        async with AsyncAnthropic(api_key="sk-ant-wrong", base_url=fake.base_url, max_retries=0) as client:
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.batches.create(requests=[request("r1", "x")])
        async with AsyncAnthropic(api_key=KEY, base_url=fake.base_url, max_retries=0) as client:
            with pytest.raises(anthropic.NotFoundError):
                await client.messages.batches.retrieve("msgbatch_nope")
    assert fake.batches.created == []
