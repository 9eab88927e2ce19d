"""The fake Messages API bills prompt caching as the real one does: writes, reads, minimums, models, in-flight twins."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest

from subagent_mcp.contracts import Usage
from subagent_mcp.core.caching import min_cacheable_tokens
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic

pytestmark = pytest.mark.anyio

HAIKU = "claude-haiku-5-5"
SHARED = "d" * (4 * min_cacheable_tokens(HAIKU))
"""A shared document just at Haiku's minimum cacheable length (the fake bills 4 characters a token)."""


def body(shared: str, own: str, *, model: str = HAIKU, mark: bool = True, **extra: object) -> dict[str, Any]:
    first: dict[str, Any] = {"type": "text", "text": shared}
    if mark:
        first["cache_control"] = {"type": "ephemeral"}
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [first, {"type": "text", "text": own}]}],
        **extra,
    }


async def post(base_url: str, *bodies: dict[str, Any]) -> list[Usage]:
    usages: list[Usage] = []
    async with httpx2.AsyncClient(base_url=base_url, headers={"authorization": "Bearer k"}) as http:
        for b in bodies:
            response = await http.post("/v1/messages", json=b)
            assert response.status_code == 200, response.text
            u = response.json()["usage"]
            usages.append(
                Usage(
                    input_tokens=u["input_tokens"],
                    output_tokens=u["output_tokens"],
                    cache_read_tokens=u["cache_read_input_tokens"],
                    cache_write_tokens=u["cache_creation_input_tokens"],
                )
            )
    return usages


async def test_a_marked_prefix_is_written_once_then_read_and_the_rest_is_input() -> None:
    async with serve_fake_anthropic() as fake:
        first, second = await post(fake.base_url, body(SHARED, "a" * 400), body(SHARED, "b" * 800))
    shared_tokens = len(SHARED) // 4
    assert (first.cache_write_tokens, first.cache_read_tokens, first.input_tokens) == (shared_tokens, 0, 100)
    assert (second.cache_write_tokens, second.cache_read_tokens, second.input_tokens) == (0, shared_tokens, 200)
    assert fake.billed_usage == first + second


async def test_a_mark_below_the_models_minimum_is_ignored() -> None:
    short = SHARED[:-8]
    async with serve_fake_anthropic() as fake:
        first, second = await post(fake.base_url, body(short, "a"), body(short, "b"))
    assert first.cache_write_tokens == second.cache_read_tokens == 0
    assert first.input_tokens == second.input_tokens == (len(short) + 1) // 4


async def test_the_cache_is_per_model() -> None:
    async with serve_fake_anthropic() as fake:
        _, other = await post(fake.base_url, body(SHARED, "a"), body(SHARED, "a", model="claude-sonnet-5-5"))
    assert (other.cache_read_tokens, other.cache_write_tokens) == (0, len(SHARED) // 4)


async def test_a_twin_in_flight_before_the_first_reply_writes_too() -> None:
    arrived = 0
    both_here = anyio.Event()

    async def handler(request: FakeRequest) -> FakeReply:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_here.set()
        await both_here.wait()
        return json_reply({})

    async with serve_fake_anthropic(handler) as fake, anyio.create_task_group() as tg:
        for own in ("a", "b"):
            tg.start_soon(post, fake.base_url, body(SHARED, own))
    assert [u.cache_write_tokens for u in fake.billed] == [len(SHARED) // 4] * 2
    assert all(u.cache_read_tokens == 0 for u in fake.billed)


async def test_top_level_automatic_caching_with_a_different_suffix_writes_every_time() -> None:
    auto = {"type": "ephemeral"}
    async with serve_fake_anthropic() as fake:
        usages = await post(
            fake.base_url,
            *(body(SHARED, own, mark=False, cache_control=auto) for own in ("a" * 40, "b" * 40, "c" * 40)),
        )
    assert all(u.cache_read_tokens == 0 and u.cache_write_tokens == (len(SHARED) + 40) // 4 for u in usages)


async def test_more_than_four_marks_are_refused_like_the_real_api() -> None:
    marked = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    request = {"model": HAIKU, "max_tokens": 10, "messages": [{"role": "user", "content": [marked] * 5}]}
    async with (
        serve_fake_anthropic() as fake,
        httpx2.AsyncClient(base_url=fake.base_url, headers={"authorization": "Bearer k"}) as http,
    ):
        response = await http.post("/v1/messages", json=request)
    assert response.status_code == 400
    assert "maximum of 4 blocks with cache_control" in response.json()["error"]["message"]
