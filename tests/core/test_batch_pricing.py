"""Batch prices: the Message Batches API bills every token at half the Messages price, cache and long prompts too."""

from __future__ import annotations

import pytest

from subagent_mcp.contracts import Usage
from subagent_mcp.core.pricing import DEFAULT_PRICES, batch_prices, cost_usd

TOKENS = Usage(input_tokens=3_000, output_tokens=700, cache_read_tokens=5_000, cache_write_tokens=2_000)


@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-haiku-4-5"])
def test_every_kind_of_token_costs_half_in_a_batch(model: str) -> None:
    assert cost_usd(TOKENS, model, batch_prices(DEFAULT_PRICES)) == pytest.approx(
        cost_usd(TOKENS, model, DEFAULT_PRICES) / 2, abs=1e-8
    )


def test_a_long_prompt_is_half_its_own_band_and_1h_writes_half_theirs() -> None:
    long = Usage(input_tokens=150_000, output_tokens=1_000)
    assert cost_usd(long, "claude-haiku-5-5", batch_prices(DEFAULT_PRICES)) == pytest.approx(
        cost_usd(long, "claude-haiku-5-5", DEFAULT_PRICES) / 2, abs=1e-8
    )
    live_1h = DEFAULT_PRICES["claude-opus-5-5"].for_ttl("1h")
    batch_1h = batch_prices(DEFAULT_PRICES)["claude-opus-5-5"].for_ttl("1h")
    assert batch_1h.cost(TOKENS) == pytest.approx(live_1h.cost(TOKENS) / 2, abs=1e-8)


def test_web_searches_are_not_discounted() -> None:
    searches = Usage(web_search_requests=10)
    assert cost_usd(searches, "claude-haiku-5-5", batch_prices(DEFAULT_PRICES)) == pytest.approx(0.1)
