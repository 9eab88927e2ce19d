"""The fake Messages API on 127.0.0.1, exercised over real HTTP with httpx2."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from jsonschema import validate

from subagent_mcp.contracts import Usage
from subagent_mcp.testing import (
    FakeReply,
    FakeRequest,
    cut_off_reply,
    disconnect_reply,
    error_reply,
    hang_reply,
    json_reply,
    oversized_reply,
    refusal_reply,
    serve_fake_anthropic,
    text_reply,
    trickle_reply,
)

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-SECRET-123"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["answer", "score"],
    "additionalProperties": False,
}


def body(schema: dict[str, Any] | None = SCHEMA, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": "claude-haiku-5-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "{}"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
        **extra,
    }
    if schema is not None:
        payload["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return payload


def client(base_url: str, **kwargs: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=base_url, headers={"authorization": f"Bearer {KEY}"}, **kwargs)


async def test_default_reply_is_a_wire_format_message_valid_for_the_schema() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        response = await http.post("/v1/messages", json=body())
    message = response.json()
    assert response.status_code == 200
    assert response.headers["request-id"] == "req_fake_0001"
    assert set(message) >= {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert (message["type"], message["role"], message["model"]) == ("message", "assistant", "claude-haiku-5-5")
    validate(json.loads(message["content"][0]["text"]), SCHEMA)
    usage = message["usage"]
    assert set(usage) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
    }
    assert fake.billed_usage == Usage(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"])


async def test_requests_are_recorded_with_convenience_accessors() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        await http.post("/v1/messages", json=body())
    [request] = fake.requests
    assert (request.method, request.path, request.model) == ("POST", "/v1/messages", "claude-haiku-5-5")
    assert (request.system_text, request.user_text) == ("be brief", "second")
    assert request.schema == SCHEMA
    assert request.api_key == KEY


async def test_x_api_key_is_accepted_and_a_missing_key_gets_401() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake, httpx2.AsyncClient(base_url=fake.base_url) as http:
        ok = await http.post("/v1/messages", json=body(), headers={"x-api-key": KEY})
        missing = await http.post("/v1/messages", json=body())
        wrong = await http.post("/v1/messages", json=body(), headers={"authorization": "Bearer other"})
    assert ok.status_code == 200
    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert len(fake.billed) == 1


async def test_queue_answers_first_then_the_handler_then_nothing_else() -> None:
    async def handler(request: FakeRequest) -> FakeReply:
        return text_reply(f"handled {request.user_text}")

    async with serve_fake_anthropic(handler) as fake, client(fake.base_url) as http:
        fake.enqueue(json_reply({"n": 1}), text_reply("queued two"))
        texts = [(await http.post("/v1/messages", json=body())).json()["content"][0]["text"] for _ in range(3)]
    assert texts == ['{"n": 1}', "queued two", "handled second"]


async def test_chosen_usage_is_sent_and_billed() -> None:
    usage = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=7, cache_write_tokens=3)
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        fake.enqueue(json_reply({"a": 1}, usage=usage), json_reply({"a": 2}, usage=usage))
        replies = [(await http.post("/v1/messages", json=body())).json() for _ in range(2)]
    assert replies[0]["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 7,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 0},
    }
    assert fake.billed_usage == usage + usage


async def test_error_reply_has_the_api_shape_status_and_retry_headers() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        fake.enqueue(error_reply(529, retry_after=3, retry_after_ms=250, should_retry=True))
        response = await http.post("/v1/messages", json=body())
    assert (response.status_code, response.reason_phrase) == (529, "Overloaded")
    assert response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert response.headers["retry-after"] == "3"
    assert response.headers["retry-after-ms"] == "250"
    assert response.headers["x-should-retry"] == "true"
    assert fake.billed == []


async def test_stop_reasons_max_tokens_and_refusal_are_sent_as_the_api_does() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        fake.enqueue(text_reply('{"answer": "tru', stop_reason="max_tokens"), refusal_reply("no", category="cyber"))
        cut, refused = [(await http.post("/v1/messages", json=body())).json() for _ in range(2)]
    assert (cut["stop_reason"], cut["content"][0]["text"]) == ("max_tokens", '{"answer": "tru')
    assert (refused["stop_reason"], refused["content"]) == ("refusal", [])
    assert refused["stop_details"] == {"type": "refusal", "category": "cyber", "explanation": "no"}


async def test_an_open_object_schema_is_rejected_like_the_real_api() -> None:
    open_schema = {"type": "object", "properties": {"x": {"type": "object", "properties": {}}}}
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        response = await http.post("/v1/messages", json=body(open_schema))
    assert response.status_code == 400
    assert "additionalProperties" in response.json()["error"]["message"]


async def test_count_tokens_is_served_and_unknown_paths_get_404() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        counted = await http.post("/v1/messages/count_tokens", json=body())
        unknown = await http.get("/v1/models")
    assert counted.status_code == 200
    assert counted.json()["input_tokens"] > 0
    assert (unknown.status_code, unknown.json()["error"]["type"]) == (404, "not_found_error")


async def test_keep_alive_serves_sequential_requests_on_one_connection() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        for _ in range(3):
            assert (await http.post("/v1/messages", json=body())).status_code == 200
    assert [r.connection for r in fake.requests] == [0, 0, 0]


async def test_a_hundred_requests_are_in_flight_at_once() -> None:
    arrived = 0
    everyone_here = anyio.Event()

    async def handler(request: FakeRequest) -> FakeReply:
        nonlocal arrived
        arrived += 1
        if arrived == 100:
            everyone_here.set()
        await everyone_here.wait()  # proves all 100 are held open together
        return json_reply({"n": request.index})

    statuses: list[int] = []

    async def send(http: httpx2.AsyncClient) -> None:
        statuses.append((await http.post("/v1/messages", json=body())).status_code)

    async with serve_fake_anthropic(handler) as fake, client(fake.base_url) as http:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(send, http)
    assert statuses == [200] * 100
    assert len({r.connection for r in fake.requests}) == 100


async def test_rate_limit_above_n_answers_429_with_retry_after_ms_to_requests_beyond_n_in_flight() -> None:
    release = anyio.Event()

    async def held(request: FakeRequest) -> FakeReply:
        await release.wait()
        return json_reply({"n": request.index})

    statuses: list[int] = []

    async def send(http: httpx2.AsyncClient) -> None:
        response = await http.post("/v1/messages", json=body())
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["retry-after-ms"] == "15"
            assert response.json()["error"]["type"] == "rate_limit_error"
            if statuses.count(429) == 2:  # both extra requests were refused while two were held
                release.set()

    async with (
        serve_fake_anthropic(held, rate_limit_above=2, rate_limit_retry_after_ms=15) as fake,
        client(fake.base_url) as http,
    ):
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(send, http)
                    await anyio.wait_all_tasks_blocked()
        assert (await http.post("/v1/messages", json=body())).status_code == 200  # room again once answered
    assert sorted(statuses) == [200, 200, 429, 429]
    assert len(fake.rate_limited) == 2
    assert (fake.max_in_flight, fake.admitted) == (2, 0)


async def test_cut_off_body_and_disconnect_are_protocol_errors_for_the_client() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        fake.enqueue(cut_off_reply({"long": "x" * 100}), disconnect_reply())
        with pytest.raises(httpx2.RemoteProtocolError, match="complete message body"):
            await http.post("/v1/messages", json=body())
        with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
            await http.post("/v1/messages", json=body())
        assert (await http.post("/v1/messages", json=body())).status_code == 200
    assert len(fake.requests) == 3
    assert len(fake.billed) == 1


async def test_hang_and_latency_outlast_a_short_client_timeout() -> None:
    # a short read timeout only: connecting may be slow on a loaded machine, answering must never come
    async with serve_fake_anthropic() as fake, client(fake.base_url, timeout=httpx2.Timeout(0.05, connect=10)) as http:
        fake.enqueue(hang_reply(), json_reply({"late": True}).after(5))
        for _ in range(2):
            with pytest.raises(httpx2.ReadTimeout):
                await http.post("/v1/messages", json=body())
    assert len(fake.requests) == 2


async def test_exit_closes_connections_still_waiting_for_an_answer() -> None:
    hold = anyio.Event()
    errors: list[str] = []

    async def handler(request: FakeRequest) -> FakeReply:
        hold.set()
        return hang_reply()

    async def send(http: httpx2.AsyncClient, url: str) -> None:
        try:
            await http.post(url, json=body())
        except httpx2.RemoteProtocolError as exc:
            errors.append(str(exc))

    # the fake exits first (innermost), while the request is still waiting in `send`
    async with client("http://unused") as http, anyio.create_task_group() as tg, serve_fake_anthropic(handler) as fake:
        tg.start_soon(send, http, f"{fake.base_url}/v1/messages")
        with anyio.fail_after(5):
            await hold.wait()
    assert errors == ["Server disconnected without sending a response."]


async def test_a_handler_that_raises_gets_500_and_fails_the_block() -> None:
    def handler(request: FakeRequest) -> FakeReply:
        raise LookupError("script ran out")

    responses: list[httpx2.Response] = []

    async def run() -> None:
        async with serve_fake_anthropic(handler) as fake, client(fake.base_url) as http:
            responses.append(await http.post("/v1/messages", json=body()))

    with pytest.raises(LookupError, match="script ran out"):
        await run()
    assert [(r.status_code, r.headers["x-should-retry"]) for r in responses] == [(500, "false")]


async def test_a_trickled_reply_drips_its_body_until_the_client_hangs_up() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        fake.enqueue(trickle_reply(every_s=0.01))
        async with http.stream("POST", "/v1/messages", json=body()) as response:
            assert response.status_code == 200
            received = b""
            async for chunk in response.aiter_raw():
                received += chunk
                if len(received) >= 3:
                    break
        assert received.strip() == b""  # leading whitespace: still a valid start of a JSON body
        with anyio.fail_after(5):
            await fake.wait_abandoned(1)
    assert fake.abandoned == [0]
    assert fake.billed == []


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
async def test_an_oversized_reply_is_a_valid_message_padded_to_its_size(gzip: bool) -> None:
    size = 3 * 1024 * 1024
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        fake.enqueue(oversized_reply(size, gzip=gzip, obj={"answer": "a", "score": 1}))
        response = await http.post("/v1/messages", json=body())
    assert len(response.content) == size
    assert response.headers.get("content-encoding") == ("gzip" if gzip else None)
    on_the_wire = int(response.headers["content-length"])
    assert (on_the_wire < size // 100) if gzip else (on_the_wire == size)
    assert json.loads(response.json()["content"][0]["text"]) == {"answer": "a", "score": 1}
    assert fake.abandoned == []


async def test_impossible_usage_can_be_scripted_verbatim() -> None:
    async with serve_fake_anthropic() as fake, client(fake.base_url) as http:
        fake.enqueue(FakeReply(text="{}", raw_usage={"input_tokens": -5, "output_tokens": "many"}))
        response = await http.post("/v1/messages", json=body())
    assert response.json()["usage"] == {"input_tokens": -5, "output_tokens": "many"}
