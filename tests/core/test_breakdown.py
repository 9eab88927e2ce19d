"""A run's cost split per subtask and per model adds up to its total and prices what the cache saved."""

from __future__ import annotations

import pytest

from subagent_mcp.contracts import Spend, SubagentResult, Usage
from subagent_mcp.core.breakdown import cache_saved, cost_breakdown
from subagent_mcp.core.pricing import DEFAULT_PRICES, cost_usd

HAIKU = "claude-haiku-5-5"
SONNET = "claude-sonnet-5-5"
OPUS = "claude-opus-5-5"


def result(task_id: str, model: str, usage: Usage) -> SubagentResult:
    return SubagentResult(
        task_id=task_id, role="writer", status="succeeded", usage=usage, model=model,
        cost_usd=cost_usd(usage, model, DEFAULT_PRICES),
    )  # fmt: skip


def spend(usage: Usage, model: str) -> Spend:
    return Spend(usage=usage, cost_usd=cost_usd(usage, model, DEFAULT_PRICES))


RESULTS = [
    result("a", HAIKU, Usage(input_tokens=1_000, output_tokens=200, cache_write_tokens=4_000)),
    result("b", HAIKU, Usage(input_tokens=1_000, output_tokens=300, cache_read_tokens=4_000)),
    result("c", SONNET, Usage(input_tokens=2_000, output_tokens=500)),
]
SUBTASKS = sum((Spend(usage=r.usage, cost_usd=r.cost_usd) for r in RESULTS), Spend())
PLANNING = spend(Usage(input_tokens=3_000, output_tokens=900), OPUS)
SYNTHESIS = spend(Usage(input_tokens=5_000, output_tokens=1_500), OPUS)


def test_every_subtask_has_its_line_and_the_models_sum_their_subtasks_costliest_first() -> None:
    b = cost_breakdown(RESULTS, SUBTASKS, (PLANNING, OPUS), (SYNTHESIS, OPUS), DEFAULT_PRICES)
    assert [(line.label, line.model, line.usage) for line in b.subtasks] == [
        (r.task_id, r.model, r.usage) for r in RESULTS
    ]
    haiku = RESULTS[0].usage + RESULTS[1].usage
    assert b.models[0].model == SONNET  # $0.0135 against haiku's $0.0099
    assert (b.models[1].model, b.models[1].usage) == (HAIKU, haiku)
    assert b.models[1].cost_usd == pytest.approx(RESULTS[0].cost_usd + RESULTS[1].cost_usd)
    assert b.earlier_attempts is None


def test_the_parts_add_up_to_the_runs_total() -> None:
    b = cost_breakdown(RESULTS, SUBTASKS, (PLANNING, OPUS), (SYNTHESIS, OPUS), DEFAULT_PRICES)
    whole = SUBTASKS + PLANNING + SYNTHESIS
    assert b.total.usage == whole.usage
    assert b.total.cost_usd == pytest.approx(whole.cost_usd)
    assert (b.planning.cost_usd, b.synthesis.cost_usd) == (PLANNING.cost_usd, SYNTHESIS.cost_usd)


def test_attempts_a_later_one_replaced_get_their_own_line_so_the_total_still_adds_up() -> None:
    first_try = spend(Usage(input_tokens=700, output_tokens=4_096), HAIKU)  # a failed attempt of "a", re-run since
    b = cost_breakdown(RESULTS, SUBTASKS + first_try, (Spend(), None), (Spend(), None), DEFAULT_PRICES)
    assert b.earlier_attempts is not None
    assert b.earlier_attempts.usage == first_try.usage
    assert b.earlier_attempts.cost_usd == pytest.approx(first_try.cost_usd)
    assert b.total.cost_usd == pytest.approx((SUBTASKS + first_try).cost_usd)


def test_an_earlier_attempts_web_searches_are_counted_in_its_line_and_the_total() -> None:
    searched = spend(Usage(input_tokens=700, output_tokens=300, web_search_requests=3, web_fetch_requests=2), HAIKU)
    b = cost_breakdown(RESULTS, SUBTASKS + searched, (Spend(), None), (Spend(), None), DEFAULT_PRICES)
    assert b.earlier_attempts is not None
    assert (b.earlier_attempts.usage.web_search_requests, b.earlier_attempts.usage.web_fetch_requests) == (3, 2)
    assert b.total.usage == (SUBTASKS + searched).usage


def test_cache_reads_save_the_difference_between_full_input_price_and_the_read_price() -> None:
    # Sonnet 5.5: $2 / MTok input, cache reads $0.10: a million tokens read from the cache save $1.90
    assert cache_saved(Usage(cache_read_tokens=1_000_000), SONNET, DEFAULT_PRICES) == pytest.approx(1.9)
    assert cache_saved(Usage(cache_write_tokens=1_000_000), HAIKU, DEFAULT_PRICES) == 0.0  # writes save nothing
    assert cache_saved(Usage(cache_read_tokens=1_000_000), "unpriced-model", DEFAULT_PRICES) == 0.0
    b = cost_breakdown(RESULTS, SUBTASKS, (PLANNING, OPUS), (SYNTHESIS, OPUS), DEFAULT_PRICES)
    assert b.subtasks[1].cache_saved_usd == pytest.approx(4_000 * (0.10 - 0.01) / 1_000_000)  # Haiku 5.5
    assert b.total.cache_saved_usd == b.subtasks[1].cache_saved_usd
