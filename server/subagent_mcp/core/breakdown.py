"""A run's cost split per subtask and per model, with what prompt-cache reads saved (pure, no I/O).

``subagent-mcp show`` and the run resource both present it, so the figures agree wherever they are read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from ..contracts import Spend, SubagentResult, Usage
from .pricing import BATCH_PRICE_FACTOR, ModelPrice, batch_prices, batch_saving, price_for


class CostLine(BaseModel):
    """What one part of a run cost: its tokens (cache reads and writes apart), dollars, and cache savings."""

    label: str = Field(description="A subtask id, a model id, 'planning', 'synthesis', 'earlier attempts' or 'total'.")
    model: str | None = Field(default=None, description="The model billed, when one model is.")
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    cache_saved_usd: float = Field(
        default=0.0, description="What the cache reads saved against paying the full input price for those tokens."
    )


class CostBreakdown(BaseModel):
    """A run's cost per subtask (latest result), per model, planning and synthesis; the parts add up to ``total``."""

    subtasks: list[CostLine] = Field(description="One line per subtask with a stored result, in plan order.")
    earlier_attempts: CostLine | None = Field(
        default=None, description="Attempts whose results a later attempt replaced (a resumed run's re-run tasks)."
    )
    models: list[CostLine] = Field(description="Subtasks' latest results summed per model, costliest first.")
    planning: CostLine
    synthesis: CostLine
    total: CostLine
    batch_saved_usd: float | None = Field(
        default=None,
        description=f"Batch mode only: what the Message Batches discount ({1 - BATCH_PRICE_FACTOR:.0%} off every "
        "token) saved against running the subtasks live; planning and synthesis are live calls at full price.",
    )


def cache_saved(usage: Usage, model: str | None, prices: Mapping[str, ModelPrice]) -> float:
    """Dollars the cache reads in ``usage`` saved against full input price; 0 for a model without a price."""
    price = price_for(model, prices) if model else None
    if price is None or not usage.cache_read_tokens:
        return 0.0
    read = usage.cache_read_tokens
    return round(price.cost(Usage(input_tokens=read)) - price.cost(Usage(cache_read_tokens=read)), 8)


def _line(label: str, model: str | None, spend: Spend, prices: Mapping[str, ModelPrice]) -> CostLine:
    return CostLine(
        label=label, model=model, usage=spend.usage, cost_usd=spend.cost_usd,
        cache_saved_usd=cache_saved(spend.usage, model, prices),
    )  # fmt: skip


def cost_breakdown(
    results: Sequence[SubagentResult],
    subtasks: Spend,
    planning: tuple[Spend, str | None],
    synthesis: tuple[Spend, str | None],
    prices: Mapping[str, ModelPrice],
    *,
    batch: bool = False,
) -> CostBreakdown:
    """Split a run's cost: ``results`` are each subtask's latest, ``subtasks`` every attempt's spend summed.

    Whatever ``subtasks`` holds beyond the results (attempts a later one replaced) is its own line, so the
    parts always add up to the total. ``planning`` and ``synthesis`` pair a spend with its model, if known.
    ``batch``: the subtasks ran in batch mode, billed at batch prices; the discount is reported.
    """
    live = prices
    prices = batch_prices(prices) if batch else prices  # what the subtasks' cache reads saved, at their price
    lines = [_line(r.task_id, r.model, Spend(usage=r.usage, cost_usd=r.cost_usd), prices) for r in results]
    latest = sum((Spend(usage=r.usage, cost_usd=r.cost_usd) for r in results), Spend())
    rest = Spend(usage=subtasks.usage - latest.usage, cost_usd=round(subtasks.cost_usd - latest.cost_usd, 8))
    earlier = _line("earlier attempts", None, rest, prices) if rest.usage.total_tokens or rest.cost_usd else None
    per_model: dict[str, Spend] = {}
    for r in results:
        if r.model is not None and (r.usage.total_tokens or r.cost_usd):
            per_model[r.model] = per_model.get(r.model, Spend()) + Spend(usage=r.usage, cost_usd=r.cost_usd)
    models = sorted(
        (_line(model, model, spend, prices) for model, spend in per_model.items()), key=lambda m: -m.cost_usd
    )
    parts = [
        *lines,
        *([earlier] if earlier else []),
        _line("planning", planning[1], planning[0], live),
        _line("synthesis", synthesis[1], synthesis[0], live),
    ]
    total = CostLine(
        label="total",
        usage=sum((p.usage for p in parts), Usage()),
        cost_usd=round(sum(p.cost_usd for p in parts), 8),
        cache_saved_usd=round(sum(p.cache_saved_usd for p in parts), 8),
    )
    saved = batch_saving(lines, live) if batch else None
    return CostBreakdown(
        subtasks=lines, earlier_attempts=earlier, models=models, planning=parts[-2], synthesis=parts[-1], total=total,
        batch_saved_usd=saved,
    )  # fmt: skip
