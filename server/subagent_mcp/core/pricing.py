"""Usage to US dollars, from a price table keyed by model id (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from ..contracts import Usage

WEB_SEARCH_USD_PER_1K = 10.0
"""The list price of the web search server tool: $10 per 1,000 searches (web fetch has no per-use fee)."""


class ModelPrice(BaseModel):
    """US dollars per million tokens of each kind, and per 1,000 web searches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    web_search_per_1k: float = WEB_SEARCH_USD_PER_1K

    def cost(self, usage: Usage) -> float:
        """Price ``usage``; cache reads default to 0.1x and cache writes to 1.25x the input price."""
        cache_read = self.input * 0.1 if self.cache_read is None else self.cache_read
        cache_write = self.input * 1.25 if self.cache_write is None else self.cache_write
        total = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * cache_read
            + usage.cache_write_tokens * cache_write
        )
        return round(total / 1_000_000 + usage.web_search_requests * self.web_search_per_1k / 1_000, 8)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    # Family list prices (USD / MTok). Override with SUBAGENT_MCP_PRICES when they change.
    "claude-opus": ModelPrice(input=5.0, output=25.0),
    "claude-sonnet": ModelPrice(input=3.0, output=15.0),
    "claude-haiku": ModelPrice(input=1.0, output=5.0),
}


def price_for(model: str, table: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The entry for ``model``: an exact id first, else the longest key that prefixes it."""
    if model in table:
        return table[model]
    matches = [key for key in table if model.startswith(key)]
    return table[max(matches, key=len)] if matches else None


def cost_usd(usage: Usage, model: str | None, table: Mapping[str, ModelPrice]) -> float:
    """Price ``usage`` for ``model``; 0.0 when the model has no price (the caller may warn)."""
    price = price_for(model, table) if model else None
    return price.cost(usage) if price else 0.0
