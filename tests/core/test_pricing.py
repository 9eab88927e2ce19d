"""The default price table follows Anthropic's list prices per model generation, prompt-length bands included."""

from __future__ import annotations

import pytest

from subagent_mcp.contracts import Usage
from subagent_mcp.core.pricing import DEFAULT_PRICES, ModelPrice, cost_usd, price_for

MILLION = 1_000_000


@pytest.mark.parametrize(
    ("model", "input_usd", "output_usd"),
    [
        ("claude-opus-5-5", 4.0, 20.0),
        ("claude-opus-5", 5.0, 25.0),
        ("claude-opus-4-1-20250805", 15.0, 75.0),
        ("claude-sonnet-5-5", 2.0, 10.0),
        ("claude-sonnet-4-5-20250929", 3.0, 15.0),
        ("claude-haiku-5-5", 0.10, 0.50),
        ("claude-haiku-4-5-20251001", 1.0, 5.0),
        ("claude-fable-5-1", 10.0, 50.0),
    ],
)
def test_each_model_generation_is_priced_at_its_own_list_price(model: str, input_usd: float, output_usd: float) -> None:
    tokens = 50_000  # under Haiku 5.5's long-prompt band
    assert cost_usd(Usage(input_tokens=tokens), model, DEFAULT_PRICES) == pytest.approx(input_usd * tokens / MILLION)
    assert cost_usd(Usage(output_tokens=tokens), model, DEFAULT_PRICES) == pytest.approx(output_usd * tokens / MILLION)


def test_cache_reads_are_priced_per_model_not_by_one_multiplier() -> None:
    reads = Usage(cache_read_tokens=MILLION // 20)  # 50k: under Haiku 5.5's long-prompt band
    assert cost_usd(reads, "claude-opus-5-5", DEFAULT_PRICES) == pytest.approx(0.20 / 20)  # 0.05x input
    assert cost_usd(reads, "claude-opus-5", DEFAULT_PRICES) == pytest.approx(0.50 / 20)  # 0.1x input
    assert cost_usd(reads, "claude-haiku-5-5", DEFAULT_PRICES) == pytest.approx(0.01 / 20)


def test_a_haiku_5_5_request_over_100k_prompt_tokens_pays_the_long_rates_on_every_token() -> None:
    short = Usage(input_tokens=60_000, cache_read_tokens=40_000, output_tokens=1_000)  # exactly 100k: short band
    long = Usage(input_tokens=60_001, cache_read_tokens=40_000, output_tokens=1_000)
    assert cost_usd(short, "claude-haiku-5-5", DEFAULT_PRICES) == pytest.approx(
        (60_000 * 0.10 + 40_000 * 0.01 + 1_000 * 0.50) / MILLION
    )
    assert cost_usd(long, "claude-haiku-5-5", DEFAULT_PRICES) == pytest.approx(
        (60_001 * 0.50 + 40_000 * 0.05 + 1_000 * 2.50) / MILLION
    )


def test_one_hour_cache_writes_cost_their_own_rate_in_both_bands() -> None:
    haiku = price_for("claude-haiku-5-5", DEFAULT_PRICES)
    assert haiku is not None
    writes, long_writes = Usage(cache_write_tokens=10_000), Usage(cache_write_tokens=200_000)
    assert haiku.cost(writes) == pytest.approx(10_000 * 0.125 / MILLION)
    assert haiku.for_ttl("1h").cost(writes) == pytest.approx(10_000 * 0.20 / MILLION)
    assert haiku.for_ttl("1h").cost(long_writes) == pytest.approx(200_000 * 1.0 / MILLION)


def test_a_price_without_cache_rates_uses_the_api_multipliers_of_its_input_price() -> None:
    plain = ModelPrice(input=1.0, output=2.0)
    assert plain.cost(Usage(cache_read_tokens=MILLION)) == pytest.approx(0.1)
    assert plain.cost(Usage(cache_write_tokens=MILLION)) == pytest.approx(1.25)
    assert plain.for_ttl("1h").cost(Usage(cache_write_tokens=MILLION)) == pytest.approx(2.0)
