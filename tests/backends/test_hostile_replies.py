"""Replies no real API sends: a body that trickles in, one too large, a gzip bomb, impossible usage.

Each ends as a clear failure of the call (a timeout, retried like one; or a refused reply, not
retried), with the real SDK against the fake Messages API on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import pytest
from pydantic import SecretStr

from subagent_mcp.backends.anthropic import AnthropicBackend
from subagent_mcp.backends.http_guard import MAX_REPLY_BYTES
from subagent_mcp.contracts import CompletionRequest, JsonObject, ModelMessage, Usage
from subagent_mcp.errors import ModelReplyError, ModelTimeoutError
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeAnthropic, FakeReply, oversized_reply, serve_fake_anthropic, trickle_reply

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-SECRET-hostile-9"
REQUEST = CompletionRequest(
    model="claude-haiku-5-5",
    system="You answer in JSON.",
    messages=[ModelMessage(role="user", content="What is 6 x 7?")],
    output_schema={"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
    max_tokens=256,
)


@dataclass
class RecordingSleep:
    """A retry sleep that records each delay and returns at once."""

    delays: list[float] = field(default_factory=list[float])

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await anyio.lowlevel.checkpoint()


def settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "anthropic_api_key": SecretStr(KEY),
        "anthropic_base_url": base_url,
        "max_retries": 3,
        "request_timeout_s": 5.0,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def fake() -> AsyncGenerator[FakeAnthropic]:
    async with serve_fake_anthropic() as running:
        yield running


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def backend(fake: FakeAnthropic, sleep: RecordingSleep) -> AsyncGenerator[AnthropicBackend]:
    async with AnthropicBackend(settings(fake.base_url), sleep=sleep) as opened:
        yield opened


async def test_a_reply_trickling_in_ends_at_the_request_timeout_on_every_attempt(
    fake: FakeAnthropic, sleep: RecordingSleep
) -> None:
    # One byte every 0.05 s: no single read waits long, so only a deadline on the whole request ends it.
    fake.handler = lambda request: trickle_reply(every_s=0.05)
    config = settings(fake.base_url, request_timeout_s=0.5, max_retries=1)
    async with AnthropicBackend(config, sleep=sleep) as backend:
        with anyio.fail_after(20), pytest.raises(ModelTimeoutError) as caught:
            await backend.complete(REQUEST)
        with anyio.fail_after(5):
            await fake.wait_abandoned(2)
    assert "no response within 0.5 s on all 2 attempts" in str(caught.value)
    assert caught.value.attempts == len(fake.requests) == 2
    assert fake.abandoned == [0, 1]  # each attempt's connection was closed by the client, not left open
    assert len(sleep.delays) == 1  # retried like any other timeout


MiB = 1024 * 1024


async def test_a_reply_whose_length_passes_the_cap_is_refused_before_its_body_is_read(
    fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.enqueue(oversized_reply(300 * MiB))
    with pytest.raises(ModelReplyError) as caught:
        await backend.complete(REQUEST)
    assert str(caught.value) == (
        "Anthropic API reply refused: the API's reply is larger than the 8,388,608 bytes accepted "
        "(its Content-Length is 314,572,800); refused without reading the rest; it was not retried, "
        "and what it cost is unknown"
    )
    assert caught.value.attempts == len(fake.requests) == 1
    with anyio.fail_after(5):
        await fake.wait_abandoned(1)  # the client hung up; the fake never got to send the 300 MB


async def test_a_gzip_reply_that_inflates_past_the_cap_is_refused_while_it_decodes(
    fake: FakeAnthropic, backend: AnthropicBackend
) -> None:
    fake.enqueue(oversized_reply(64 * MiB, gzip=True))  # ~64 kB on the wire
    with pytest.raises(
        ModelReplyError, match=r"larger than the 8,388,608 bytes accepted \(counted as it was decoded\)"
    ):
        await backend.complete(REQUEST)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
async def test_a_large_reply_under_the_cap_is_read_whole(
    fake: FakeAnthropic, backend: AnthropicBackend, gzip: bool
) -> None:
    fake.enqueue(oversized_reply(MAX_REPLY_BYTES - 1024, gzip=gzip, obj={"answer": "padded"}))
    completion = await backend.complete(REQUEST)
    assert completion.text == '{"answer": "padded"}'


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        ({"input_tokens": -1_199_999_999, "output_tokens": 1}, "impossible usage: input_tokens = -1199999999"),
        ({"input_tokens": 10, "output_tokens": -3}, "impossible usage: output_tokens = -3"),
        ({"input_tokens": 10, "output_tokens": 10**12}, "impossible usage: output_tokens = 1000000000000"),
        ({"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": -7}, "cache_read_tokens = -7"),
        ({"input_tokens": "many", "output_tokens": 1}, "impossible usage: input_tokens = 'many'"),
        ({"input_tokens": 1.5, "output_tokens": 1}, "impossible usage: input_tokens = 1.5"),
        ({"input_tokens": True, "output_tokens": 1}, "impossible usage: input_tokens = True"),
    ],
    ids=["negative-input", "negative-output", "absurd-output", "negative-cache", "string", "float", "bool"],
)
async def test_a_reply_reporting_impossible_usage_is_a_failed_attempt_that_says_so(
    fake: FakeAnthropic, backend: AnthropicBackend, usage: dict[str, Any], problem: str
) -> None:
    fake.enqueue(FakeReply(text='{"answer": "42"}', raw_usage=usage))
    with pytest.raises(ModelReplyError, match="Anthropic API reply refused") as caught:
        await backend.complete(REQUEST)
    assert problem in str(caught.value)
    assert (caught.value.attempts, caught.value.usage) == (1, Usage())
    assert len(fake.requests) == 1


@pytest.mark.parametrize("junk", ["junk", 7, None], ids=["string", "number", "null"])
async def test_a_paused_turn_whose_content_holds_a_block_that_is_not_an_object_fails_with_what_it_spent(
    fake: FakeAnthropic, backend: AnthropicBackend, junk: object
) -> None:
    blocks = cast(tuple[JsonObject, ...], (junk,))  # what no real API sends: the fake sends it verbatim
    usage = Usage(input_tokens=10, output_tokens=5)
    fake.enqueue(FakeReply(text='{"answer": "42"}', stop_reason="pause_turn", blocks=blocks, usage=usage))
    with pytest.raises(ModelReplyError, match=r"\(pause_turn\) with content that cannot be sent back") as caught:
        await backend.complete(REQUEST)
    assert len(fake.message_requests) == 1
    assert (caught.value.usage, caught.value.attempts, caught.value.model) == (fake.billed_usage, 1, REQUEST.model)
