"""Cost preview of a plan before execution: expected and worst-case tokens and USD (pure, no I/O).

The budget check and the preview price calls with the same table, so what a host is shown is what
the run is held to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..contracts import PlanEstimate, TaskEstimate, Usage
from .graph import critical_path_length
from .pricing import ModelPrice, batch_prices, cost_usd

DEPENDENCY_OVERHEAD_TOKENS = 40
"""Tokens per dependency entry besides its output: id, role, status and JSON punctuation."""


SUMMARY_TOKENS = 50
"""Expected tokens of an output's ``summary`` (one or two sentences): what the synthesizer reads of a
result that later subtasks used (``context.read_by_summary``)."""


CALL_LATENCY_TOKENS = 150
"""A call's fixed latency (queueing, reading the prompt, time to first token) in output tokens' worth of
decoding: about 1.5 s at 100 tokens/s. Only ratios matter, as the executor's priority compares sums."""


def expected_durations(estimate: PlanEstimate) -> dict[str, float]:
    """Each subtask's expected duration in output tokens, for the executor's critical-path priority.

    Decoding dominates a model call's time, so the expected reply length plus a fixed per-call
    latency orders tasks by duration well enough; prompt size and model speed are left out.
    """
    return {t.task_id: float(CALL_LATENCY_TOKENS + t.output_tokens) for t in estimate.tasks}


def estimate_call(
    task_id: str,
    model: str,
    input_tokens: tuple[int, int],
    expected_output_tokens: int,
    max_output_tokens: int,
    prices: Mapping[str, ModelPrice],
    cached: tuple[int, int] = (0, 0),
    tool_uses: Mapping[str, int] | None = None,
) -> TaskEstimate:
    """Price one call at its expected and at its worst case: ``input_tokens`` is (expected, worst) prompt size.

    ``cached`` is (read, written) prompt tokens expected from and to the prompt cache; the worst case
    writes the whole cached prefix, as a call does when the cache expired or its writer failed.
    ``tool_uses`` (``web_search_requests``: max_uses, ...) are the worst case's server-tool requests.
    """
    expected_in, worst_in = input_tokens
    read, written = cached
    prefix = max(read, written)
    expected_out = min(expected_output_tokens, max_output_tokens)
    expected = Usage(
        input_tokens=expected_in - read - written,
        output_tokens=expected_out,
        cache_read_tokens=read,
        cache_write_tokens=written,
    )
    worst = Usage(
        input_tokens=worst_in - prefix, output_tokens=max_output_tokens, cache_write_tokens=prefix, **(tool_uses or {})
    )
    return TaskEstimate(
        task_id=task_id,
        model=model,
        input_tokens=expected_in,
        max_input_tokens=worst_in,
        cache_read_tokens=read,
        cache_write_tokens=written,
        output_tokens=expected_out,
        max_output_tokens=max_output_tokens,
        cost_usd=cost_usd(expected, model, prices),
        max_cost_usd=cost_usd(worst, model, prices),
    )


def context_tokens(dependency_outputs: Sequence[int], budget_tokens: int) -> int:
    """Expected tokens of a dependency context: the outputs plus overhead, capped by the context budget."""
    if not dependency_outputs:
        return 0
    return min(budget_tokens, sum(dependency_outputs) + DEPENDENCY_OVERHEAD_TOKENS * len(dependency_outputs))


def total(
    tasks: list[TaskEstimate], graph: Mapping[str, Sequence[str]], synthesis: TaskEstimate | None = None
) -> PlanEstimate:
    """Sum the calls of a plan (and its synthesis, if given) and note its critical-path length."""
    calls = [*tasks, *([synthesis] if synthesis else [])]
    return PlanEstimate(
        tasks=tasks,
        synthesis=synthesis,
        input_tokens=sum(c.input_tokens for c in calls),
        cache_read_tokens=sum(c.cache_read_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        cost_usd=round(sum(c.cost_usd for c in calls), 6),
        max_cost_usd=round(sum(c.max_cost_usd for c in calls), 6),
        critical_path_subtasks=int(critical_path_length(graph)),
    )


def with_batch_cost(estimate: PlanEstimate, prices: Mapping[str, ModelPrice], batch: bool) -> PlanEstimate:
    """``estimate`` with the expected cost of its subtasks in batch mode (half price) beside it, synthesis live.

    ``batch``: the estimate's own subtask figures are already batch prices (a batch run's estimate).
    """
    discounted = batch_prices(prices)
    tasks = sum(cost_usd(_expected_usage(t), t.model, discounted) for t in estimate.tasks)
    synthesis = estimate.synthesis.cost_usd if estimate.synthesis is not None else 0.0
    return estimate.model_copy(update={"batch": batch, "batch_cost_usd": round(tasks + synthesis, 6)})


def _expected_usage(task: TaskEstimate) -> Usage:
    """The usage ``estimate_call`` priced as a call's expected cost."""
    fresh = task.input_tokens - task.cache_read_tokens - task.cache_write_tokens
    return Usage(
        input_tokens=max(0, fresh),
        output_tokens=task.output_tokens,
        cache_read_tokens=task.cache_read_tokens,
        cache_write_tokens=task.cache_write_tokens,
    )
