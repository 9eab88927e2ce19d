"""Usage to US dollars, from a price table keyed by model id (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ..contracts import Usage
from .caching import READ_MULTIPLIER, WRITE_MULTIPLIER

WEB_SEARCH_USD_PER_1K = 10.0
"""The list price of the web search server tool: $10 per 1,000 searches (web fetch has no per-use fee)."""


class ModelPrice(BaseModel):
    """US dollars per million tokens of each kind, and per 1,000 web searches.

    Unset cache prices follow the API's usual multipliers of the input price: reads 0.1x, 5-minute
    writes 1.25x, 1-hour writes 2x. A model priced by prompt length (Haiku 5.5) carries ``long_prompt``:
    a request whose prompt (input, cache reads and writes) passes ``long_prompt_tokens`` pays those
    rates on every token, output included.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = Field(default=None, description="Writes with the 5-minute TTL.")
    cache_write_1h: float | None = Field(default=None, description="Writes with the 1-hour TTL.")
    web_search_per_1k: float = WEB_SEARCH_USD_PER_1K
    long_prompt_tokens: int | None = Field(default=None, gt=0)
    long_prompt: ModelPrice | None = None

    @property
    def read_rate(self) -> float:
        """Cache reads: the set price, else ``READ_MULTIPLIER`` x input."""
        return self.input * READ_MULTIPLIER if self.cache_read is None else self.cache_read

    @property
    def write_rate(self) -> float:
        """Cache writes with the 5-minute TTL: the set price, else its multiplier x input."""
        return self.input * WRITE_MULTIPLIER["5m"] if self.cache_write is None else self.cache_write

    @property
    def write_1h_rate(self) -> float:
        """Cache writes with the 1-hour TTL: the set price, else its multiplier x input."""
        return self.input * WRITE_MULTIPLIER["1h"] if self.cache_write_1h is None else self.cache_write_1h

    def cost(self, usage: Usage) -> float:
        """Price the usage of one request (a sum of requests is priced as if it were one)."""
        if self.long_prompt is not None and self.long_prompt_tokens is not None:
            prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
            if prompt > self.long_prompt_tokens:
                return self.long_prompt.cost(usage)
        total = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.read_rate
            + usage.cache_write_tokens * self.write_rate
        )
        return round(total / 1_000_000 + usage.web_search_requests * self.web_search_per_1k / 1_000, 8)

    def for_ttl(self, ttl: Literal["5m", "1h"]) -> ModelPrice:
        """This price with cache writes at ``ttl``'s rate (the server marks every prefix with one TTL)."""
        if ttl == "5m":
            return self
        long = self.long_prompt.for_ttl(ttl) if self.long_prompt is not None else None
        return self.model_copy(update={"cache_write": self.write_1h_rate, "long_prompt": long})


def _list_price(inp: float, out: float, read: float, write_5m: float, write_1h: float, **more: object) -> ModelPrice:
    return ModelPrice.model_validate(
        {"input": inp, "output": out, "cache_read": read, "cache_write": write_5m, "cache_write_1h": write_1h, **more}
    )


DEFAULT_PRICES: dict[str, ModelPrice] = {
    # Anthropic's list prices (USD / MTok) as of 2026-11; the longest key that prefixes a model id wins.
    # Override or add with SUBAGENT_MCP_PRICES when they change.
    "claude-fable-5-1": _list_price(10.0, 50.0, 0.25, 12.5, 20.0),
    "claude-fable-5": _list_price(10.0, 50.0, 1.0, 12.5, 20.0),
    "claude-opus-5-5": _list_price(4.0, 20.0, 0.20, 5.0, 8.0),
    "claude-opus": _list_price(5.0, 25.0, 0.50, 6.25, 10.0),  # Opus 4.5 to 5
    "claude-opus-4-1": _list_price(15.0, 75.0, 1.50, 18.75, 30.0),
    "claude-opus-4-0": _list_price(15.0, 75.0, 1.50, 18.75, 30.0),
    "claude-opus-4-2025": _list_price(15.0, 75.0, 1.50, 18.75, 30.0),  # Opus 4's dated id
    "claude-sonnet-5-5": _list_price(2.0, 10.0, 0.10, 2.5, 4.0),
    "claude-sonnet-5": _list_price(2.0, 10.0, 0.20, 2.5, 4.0),
    "claude-sonnet": _list_price(3.0, 15.0, 0.30, 3.75, 6.0),  # Sonnet 4.x and older
    "claude-haiku-5-5": _list_price(
        0.10,
        0.50,
        0.01,
        0.125,
        0.20,
        long_prompt_tokens=100_000,
        long_prompt=_list_price(0.50, 2.50, 0.05, 0.625, 1.0),
    ),
    "claude-haiku": _list_price(1.0, 5.0, 0.10, 1.25, 2.0),  # Haiku 4.5
    "claude-3-5-haiku": _list_price(0.80, 4.0, 0.08, 1.0, 1.6),
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


BATCH_PRICE_FACTOR = 0.5
"""The Message Batches API bills every kind of token at half the Messages price (cache reads and writes too);
per-use server-tool fees are not discounted."""


def batch_price(price: ModelPrice) -> ModelPrice:
    """``price`` as the Message Batches API bills it: each token rate halved (unset cache rates derived first),
    a long-prompt band too; the web-search fee unchanged."""
    half = BATCH_PRICE_FACTOR
    return price.model_copy(
        update={
            "input": price.input * half,
            "output": price.output * half,
            "cache_read": price.read_rate * half,
            "cache_write": price.write_rate * half,
            "cache_write_1h": price.write_1h_rate * half,
            "long_prompt": None if price.long_prompt is None else batch_price(price.long_prompt),
        }
    )


def batch_prices(table: Mapping[str, ModelPrice]) -> dict[str, ModelPrice]:
    """A price table for calls sent through the Message Batches API (see ``BATCH_PRICE_FACTOR``)."""
    return {model: batch_price(price) for model, price in table.items()}


class Priced(Protocol):
    """What a batch saving is computed from: a call's usage, its model and what it was billed."""

    @property
    def usage(self) -> Usage: ...
    @property
    def model(self) -> str | None: ...
    @property
    def cost_usd(self) -> float: ...


def batch_saving(items: Iterable[Priced], live: Mapping[str, ModelPrice]) -> float:
    """What the batch discount saved on ``items``: each one's live price less what it was billed (never below 0)."""
    return round(sum(max(0.0, cost_usd(i.usage, i.model, live) - i.cost_usd) for i in items), 8)


def priced_model(named: str | None, requested: str, table: Mapping[str, ModelPrice]) -> str:
    """The model a reply is billed as: the one it names when ``table`` prices it, else the one requested.

    A reply's model is the API's (or a proxy's) word: one naming a model without a price must not make its call free.
    """
    return named if named and price_for(named, table) is not None else requested


def unpriced_models(models: Iterable[str], table: Mapping[str, ModelPrice]) -> list[str]:
    """Those of ``models`` that ``table`` has no price for (a budget could not limit calls to them), sorted."""
    return sorted({m for m in models if price_for(m, table) is None})
