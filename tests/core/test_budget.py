"""A run's budget refuses a call whose worst case could cross a limit, counting calls in flight."""

from __future__ import annotations

import pytest

from subagent_mcp.contracts import Spend, Usage
from subagent_mcp.core.budget import Budget, Limits, overshoot
from subagent_mcp.core.pricing import ModelPrice
from subagent_mcp.errors import BudgetExceededError

PRICES = {"m": ModelPrice(input=1.0, output=10.0)}  # $1 / $10 per million tokens


def test_a_call_within_the_limit_is_allowed_and_charged_what_it_used() -> None:
    budget = Budget(Limits(max_cost_usd=0.02), PRICES)
    held = budget.reserve("m", input_tokens=1_000, max_output_tokens=1_000)  # worst case $0.011
    assert held is not None
    assert budget.reserved_usd == pytest.approx(0.011)
    budget.settle(held, "m", Usage(input_tokens=1_000, output_tokens=100))
    assert budget.reserved_usd == 0
    assert budget.spent_usd == pytest.approx(0.002)


def test_a_call_that_fits_only_once_the_calls_in_flight_settle_waits_for_them() -> None:
    budget = Budget(Limits(max_cost_usd=0.02), PRICES)
    first = budget.reserve("m", 1_000, 1_000)  # worst case $0.011
    assert first is not None
    assert budget.reserve("m", 1_000, 1_000) is None  # $0.022 with the first in flight: wait, not refused
    assert (budget.refused, budget.in_flight) == (0, 1)
    budget.settle(first, "m", Usage(input_tokens=1_000, output_tokens=100))  # $0.0015 spent
    assert budget.reserve("m", 1_000, 1_000) is not None


def test_a_call_is_refused_at_once_when_spent_plus_its_worst_case_alone_would_cross_the_limit() -> None:
    budget = Budget(Limits(max_cost_usd=0.02), PRICES)
    first = budget.reserve("m", 1_000, 1_000)
    assert first is not None
    budget.settle(first, "m", Usage(input_tokens=1_000, output_tokens=1_000))  # $0.011 spent
    budget.reserve("m", 100, 100)  # in flight, but not why the next call is refused
    with pytest.raises(BudgetExceededError, match=r"\$0\.0110 spent and \$0\.0011 in flight.*limit of \$0\.0200"):
        budget.reserve("m", 1_000, 1_000)
    assert budget.refused == 1


def test_when_nothing_is_in_flight_nothing_stays_reserved() -> None:
    budget = Budget(Limits(max_cost_usd=1.0), {"m": ModelPrice(input=0.1, output=0.7)})
    held = [budget.reserve("m", 7, 3) for _ in range(10)]
    for reservation in held:
        assert reservation is not None
        budget.settle(reservation, "m", Usage())
    assert (budget.reserved_usd, budget.reserved_tokens, budget.in_flight) == (0.0, 0, 0)


def test_spent_usage_counts_after_settling_even_for_failed_calls() -> None:
    budget = Budget(Limits(max_total_tokens=3_000), PRICES)
    held = budget.reserve("m", 500, 1_000)
    assert held is not None
    budget.settle(held, "m", Usage(input_tokens=500, output_tokens=1_000))  # e.g. a truncated reply
    with pytest.raises(BudgetExceededError, match="1,500 tokens spent"):
        budget.reserve("m", 500, 1_001)
    assert budget.reserve("m", 500, 1_000) is not None  # exactly at the limit is allowed


def test_no_limits_never_refuse() -> None:
    budget = Budget(Limits(), PRICES)
    for _ in range(100):
        budget.reserve("m", 10**6, 10**6)
    assert budget.refused == 0


def test_overshoot_says_which_ceiling_a_run_billed_past_and_nothing_within_them() -> None:
    spent = Spend(usage=Usage(input_tokens=900, output_tokens=200), cost_usd=0.5)
    assert overshoot(Limits(max_cost_usd=0.5, max_total_tokens=1_100), spent) is None
    said = overshoot(Limits(max_cost_usd=0.4, max_total_tokens=1_000), spent) or ""
    assert said.startswith(
        "Over budget: this run billed $0.5000, $0.1000 over its max_cost_usd of $0.4000 and billed 1,100 tokens, "
        "over its max_total_tokens of 1,000. "
    )
