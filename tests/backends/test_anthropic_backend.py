"""AnthropicBackend with the real SDK against the fake Messages API on 127.0.0.1: no mocks, no sleeps."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from subagent_mcp.backends.anthropic import AnthropicBackend
from subagent_mcp.backends.anthropic_client import is_loopback_url
from subagent_mcp.contracts import CompletionRequest, ModelMessage, Usage
from subagent_mcp.errors import (
    ConfigError,
    InputError,
    ModelError,
    ModelRequestError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from subagent_mcp.settings import Settings
from subagent_mcp.testing import (
    FakeAnthropic,
    FakeReply,
    FakeRequest,
    cut_off_reply,
    disconnect_reply,
    error_reply,
    hang_reply,
    json_reply,
    refusal_reply,
    serve_fake_anthropic,
    text_reply,
)

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-SECRET-123"
MAX_RETRIES = 3
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
REQUEST = CompletionRequest(
    model="claude-haiku-5-5",
    system="You answer in JSON.",
    messages=[ModelMessage(role="user", content="What is 6 x 7?")],
    output_schema=SCHEMA,
    max_tokens=256,
    label="t1",
)


@dataclass
class RecordingSleep:
    """A retry sleep that records each delay and returns at once."""

    delays: list[float] = field(default_factory=list[float])

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await anyio.lowlevel.checkpoint()


def settings(base_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "anthropic_api_key": SecretStr(KEY),
        "anthropic_base_url": base_url,
        "max_retries": MAX_RETRIES,
        "request_timeout_s": 5.0,
        "retry_max_wait_s": 30.0,
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


async def test_success_returns_text_usage_and_request_id(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    usage = Usage(input_tokens=40, output_tokens=6, cache_read_tokens=30, cache_write_tokens=2)
    fake.enqueue(json_reply({"answer": "42"}, usage=usage))
    completion = await backend.complete(REQUEST)
    assert completion.text == '{"answer": "42"}'
    assert (completion.stop_reason, completion.model, completion.attempts) == ("end_turn", "claude-haiku-5-5", 1)
    assert completion.usage == usage == fake.billed_usage
    assert completion.request_id == "req_fake_0001"


async def test_request_carries_bearer_key_and_closed_schema(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    await backend.complete(REQUEST)
    [sent] = fake.requests
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["output_config"]["format"]["type"] == "json_schema"
    assert sent.schema is not None
    assert sent.schema["additionalProperties"] is False
    assert sent.schema["required"] == ["answer"]
    assert (sent.model, sent.system_text, sent.user_text) == ("claude-haiku-5-5", REQUEST.system, "What is 6 x 7?")
    assert sent.body["max_tokens"] == 256


async def test_max_tokens_and_refusal_come_back_as_completions(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    fake.enqueue(text_reply('{"answer": "for', stop_reason="max_tokens"), refusal_reply())
    cut = await backend.complete(REQUEST)
    refused = await backend.complete(REQUEST)
    assert (cut.stop_reason, cut.text) == ("max_tokens", '{"answer": "for')
    assert (refused.stop_reason, refused.text) == ("refusal", "")


TRANSIENT: dict[str, FakeReply] = {
    "408": error_reply(408),
    "409": error_reply(409),
    "429": error_reply(429),
    "500": error_reply(500),
    "529": error_reply(529),
    "cut-off": cut_off_reply(),
    "dropped": disconnect_reply(),
}


@pytest.mark.parametrize("failure", TRANSIENT.values(), ids=TRANSIENT.keys())
async def test_transient_failure_is_sent_max_retries_plus_one_times(
    fake: FakeAnthropic, backend: AnthropicBackend, failure: FakeReply
) -> None:
    fake.handler = lambda request: failure
    with pytest.raises(ModelUnavailableError, match=f"on all {MAX_RETRIES + 1} attempts") as caught:
        await backend.complete(REQUEST)
    assert len(fake.requests) == MAX_RETRIES + 1
    assert caught.value.attempts == MAX_RETRIES + 1
    assert caught.value.status_code == (failure.status if failure.action == "answer" else None)


@pytest.mark.parametrize("failure", TRANSIENT.values(), ids=TRANSIENT.keys())
async def test_transient_failure_then_success_takes_two_requests(
    fake: FakeAnthropic, backend: AnthropicBackend, failure: FakeReply
) -> None:
    fake.enqueue(failure, json_reply({"answer": "ok"}))
    completion = await backend.complete(REQUEST)
    assert (completion.text, completion.attempts) == ('{"answer": "ok"}', 2)
    assert len(fake.requests) == 2


async def test_rate_limit_message_says_what_was_retried(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    fake.handler = lambda request: error_reply(429, "Number of requests exceeds your rate limit")
    with pytest.raises(ModelUnavailableError) as caught:
        await backend.complete(REQUEST)
    assert str(caught.value).startswith("Anthropic API unavailable: rate limited (429) on all 4 attempts;")
    assert "rate_limit_error: Number of requests exceeds your rate limit" in str(caught.value)
    assert (caught.value.model, caught.value.request_id) == ("claude-haiku-5-5", "req_fake_0004")


@pytest.mark.parametrize(
    ("reply", "delay"),
    [
        (error_reply(429, retry_after_ms=250), 0.25),
        (error_reply(503, retry_after="2"), 2.0),
        (error_reply(529, retry_after_ms=1500, retry_after="9"), 1.5),
        (error_reply(429, retry_after="120"), 30.0),
        (error_reply(429, retry_after="Fri, 31 Dec 2100 23:59:59 GMT"), 30.0),
    ],
    ids=["retry-after-ms", "retry-after", "ms-wins", "capped", "http-date-capped"],
)
async def test_retry_after_is_honoured_and_capped(
    fake: FakeAnthropic, backend: AnthropicBackend, sleep: RecordingSleep, reply: FakeReply, delay: float
) -> None:
    fake.enqueue(reply, json_reply({"answer": "ok"}))
    await backend.complete(REQUEST)
    assert sleep.delays == [delay]


async def test_backoff_without_header_is_jittered_exponential_and_capped(fake: FakeAnthropic) -> None:
    sleep = RecordingSleep()
    fake.handler = lambda request: error_reply(500)
    async with AnthropicBackend(settings(fake.base_url, max_retries=6, retry_max_wait_s=3.0), sleep=sleep) as backend:
        with pytest.raises(ModelUnavailableError):
            await backend.complete(REQUEST)
    bounds = [(0.375, 0.5), (0.75, 1.0), (1.5, 2.0), (3.0, 3.0), (3.0, 3.0), (3.0, 3.0)]
    assert len(sleep.delays) == len(bounds)
    assert all(low <= d <= high for d, (low, high) in zip(sleep.delays, bounds, strict=True)), sleep.delays


async def test_x_should_retry_overrides_the_status(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    fake.enqueue(error_reply(503, should_retry=False))
    with pytest.raises(ModelUnavailableError, match=r"service unavailable \(503\) on 1 attempt"):
        await backend.complete(REQUEST)
    fake.enqueue(error_reply(400, should_retry=True), json_reply({"answer": "ok"}))
    assert (await backend.complete(REQUEST)).attempts == 2
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
     (404, "not_found_error"), (413, "invalid_request_error"), (422, "invalid_request_error")],
)  # fmt: skip
async def test_permanent_4xx_fails_after_one_request_with_the_api_message(
    fake: FakeAnthropic, backend: AnthropicBackend, status: int, error_type: str
) -> None:
    fake.handler = lambda request: error_reply(status, f"the API says {status}")
    with pytest.raises(ModelRequestError) as caught:
        await backend.complete(REQUEST)
    assert str(caught.value).startswith(
        f"Anthropic API rejected the request ({status} {error_type}): the API says {status}"
    )
    assert (caught.value.attempts, caught.value.status_code, caught.value.request_id) == (1, status, "req_fake_0001")
    assert len(fake.requests) == 1


async def test_wrong_key_gets_the_api_401_message() -> None:
    async with (
        serve_fake_anthropic(api_key="sk-ant-the-right-one") as fake,
        AnthropicBackend(settings(fake.base_url)) as backend,
    ):
        with pytest.raises(ModelRequestError) as caught:
            await backend.complete(REQUEST)
    assert str(caught.value) == (
        "Anthropic API rejected the request (401 authentication_error): invalid x-api-key; "
        "check ANTHROPIC_API_KEY in the server's environment (no quotes around it)"
    )
    assert len(fake.requests) == 1


async def test_hanging_request_ends_at_the_timeout_on_every_attempt(fake: FakeAnthropic, sleep: RecordingSleep) -> None:
    fake.handler = lambda request: hang_reply()
    config = settings(fake.base_url, request_timeout_s=0.2, max_retries=1)
    async with AnthropicBackend(config, sleep=sleep) as backend:
        with anyio.fail_after(5), pytest.raises(ModelTimeoutError) as caught:
            await backend.complete(REQUEST)
    assert "no response within 0.2 s on all 2 attempts" in str(caught.value)
    assert caught.value.attempts == len(fake.requests) == 2
    assert len(sleep.delays) == 1


async def test_api_key_never_appears_in_errors_or_logs(
    fake: FakeAnthropic, backend: AnthropicBackend, caplog: pytest.LogCaptureFixture
) -> None:
    def echo_key(request: FakeRequest) -> FakeReply:  # a server that quotes the credentials it got
        status = 429 if request.index < 2 else 401
        return error_reply(status, f"bad credentials: {request.headers['authorization']}")

    fake.handler = echo_key
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ModelError) as caught:
        await backend.complete(REQUEST)
    assert len(fake.requests) == 3
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)
    assert "bad credentials: Bearer [redacted]" in str(caught.value)
    assert caplog.records
    assert not [r for r in caplog.records if KEY in r.getMessage() or KEY in (r.exc_text or "")]


async def test_each_retry_is_logged_with_attempt_status_and_request_id(
    fake: FakeAnthropic, backend: AnthropicBackend, caplog: pytest.LogCaptureFixture
) -> None:
    fake.enqueue(error_reply(529, retry_after_ms=1), error_reply(429, retry_after_ms=1))
    caplog.set_level(logging.INFO, logger="subagent_mcp.backends.anthropic")
    await backend.complete(REQUEST)
    messages = [r.getMessage() for r in caplog.records if r.name == "subagent_mcp.backends.anthropic"]
    assert len(messages) == 2
    assert "attempt 1 of 4" in messages[0]
    assert "status=529, request_id=req_fake_0001" in messages[0]
    assert "attempt 2 of 4" in messages[1]
    assert "status=429, request_id=req_fake_0002" in messages[1]


async def test_remote_guard_refuses_the_default_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # were the guard broken, nothing would leave this host
    async with AnthropicBackend(settings(None), sleep=RecordingSleep()) as backend:
        with pytest.raises(ConfigError, match=r"base URL https://api\.anthropic\.com is not loopback"):
            await backend.complete(REQUEST)


async def test_remote_guard_sends_nothing_and_lifting_it_sends(
    fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.0.0.0 is not a loopback address, yet connecting to it reaches this host, so the fake
    # would see a request if the guard let one through.
    remote_url = fake.base_url.replace("127.0.0.1", "0.0.0.0")
    async with AnthropicBackend(settings(remote_url)) as backend:
        with pytest.raises(ConfigError, match="is not loopback"):
            await backend.complete(REQUEST)
        assert fake.requests == []
        monkeypatch.setenv("SUBAGENT_MCP_ALLOW_REMOTE_MODEL", "1")
        await backend.complete(REQUEST)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://127.9.9.9", True),
        ("http://localhost:1", True),
        ("http://[::1]:2", True),
        ("https://api.anthropic.com", False),
        ("http://0.0.0.0:3", False),
        ("http://localhost.example.com", False),
        ("http://10.0.0.1", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


async def test_missing_api_key_is_a_config_error(fake: FakeAnthropic) -> None:
    async with AnthropicBackend(settings(fake.base_url, anthropic_api_key=None)) as backend:
        with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
            await backend.complete(REQUEST)
    assert fake.requests == []


async def test_schema_the_api_cannot_take_is_an_input_error(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    with pytest.raises(InputError, match=r"output_schema cannot be sent to the Anthropic API at \(root\)"):
        await backend.complete(REQUEST.model_copy(update={"output_schema": {"description": "no type"}}))
    assert fake.requests == []


async def test_fifty_concurrent_completions_share_one_client(fake: FakeAnthropic, backend: AnthropicBackend) -> None:
    arrived = 0
    everyone_here = anyio.Event()

    async def handler(request: FakeRequest) -> FakeReply:
        nonlocal arrived
        arrived += 1
        if arrived == 50:
            everyone_here.set()
        await everyone_here.wait()  # all 50 are in flight together before any is answered
        return json_reply({"answer": str(request.index)})

    fake.handler = handler
    texts: list[str] = []

    async def one() -> None:
        texts.append((await backend.complete(REQUEST)).text)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)
    assert len(set(texts)) == len(fake.requests) == 50


@pytest.mark.parametrize("tail", ["\n", "\r\n"], ids=["lf", "crlf"])
async def test_a_key_read_with_a_trailing_line_break_is_sent_without_it(tail: str, sleep: RecordingSleep) -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        config = Settings.from_env({"ANTHROPIC_API_KEY": KEY + tail, "ANTHROPIC_BASE_URL": fake.base_url}, None)
        async with AnthropicBackend(config, sleep=sleep) as backend:
            completion = await backend.complete(REQUEST)
    assert completion.attempts == 1
    assert [r.headers["authorization"] for r in fake.requests] == [f"Bearer {KEY}"]


@pytest.mark.parametrize(
    "reply",
    [
        error_reply(529, retry_after="Mon, 01 Jan 99999 00:00:00 GMT"),
        error_reply(503, retry_after="Mon, 01 Jan 99999 00:00:00 GMT"),
        error_reply(429, retry_after="Sat, 01 Jan 0001 00:00:00 GMT"),
        error_reply(529, retry_after_ms=float("nan")),
        error_reply(503, retry_after="1e999"),
    ],
    ids=["year-99999-overloaded", "year-99999-unavailable", "year-1", "nan-ms", "infinite"],
)
async def test_a_retry_after_no_clock_can_hold_is_ignored_and_the_call_backs_off_and_retries(
    fake: FakeAnthropic, backend: AnthropicBackend, sleep: RecordingSleep, reply: FakeReply
) -> None:
    fake.enqueue(reply, json_reply({"answer": "ok"}))
    completion = await backend.complete(REQUEST)
    assert (completion.text, completion.attempts) == ('{"answer": "ok"}', 2)
    assert len(sleep.delays) == 1
    assert 0.375 <= sleep.delays[0] <= 0.5  # the first backoff, as if no header had been sent
