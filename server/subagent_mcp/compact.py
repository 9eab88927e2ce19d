"""Keep one tool result under what hosts accept (Claude Code warns near 25k tokens).

Only subtask outputs are shrunk (largest first, JSON-safe, by the same code that budgets context),
so the result still matches its output schema; the whole outputs stay in the store.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel

from .contracts import OrchestrateResult, RunReport, SubagentResult
from .core.context import estimate_tokens, fit_results
from .handles import RunHandle

MAX_RESULT_TOKENS = 18_000
"""Structured content budget; the text block (a summary) comes on top, staying under ~20k in all."""

M = TypeVar("M", bound=BaseModel)


def fit_for_host(model: M, max_tokens: int = MAX_RESULT_TOKENS) -> tuple[M, int]:
    """``model`` with subtask outputs shrunk until its JSON fits ``max_tokens``; and how many were cut."""
    if _tokens(model) <= max_tokens:
        return model, 0
    if isinstance(model, SubagentResult):
        (fitted,), cut = _fit([model], max_tokens - _tokens(model.model_copy(update={"output": None})))
        return fitted, cut  # type: ignore[return-value]  # same class as model
    if isinstance(model, RunReport):
        return _fit_report(model, max_tokens)  # type: ignore[return-value]  # same class as model
    if isinstance(model, RunHandle):
        return _fit_handle(model, max_tokens), 0  # type: ignore[return-value]  # same class as model
    if isinstance(model, OrchestrateResult):
        report, cut = fit_for_host(model.report, max_tokens - _tokens(model.model_copy(update={"report": None})))
        return model.model_copy(update={"report": report}), cut  # type: ignore[return-value]
    return model, 0


def _fit_report(report: RunReport, max_tokens: int) -> tuple[RunReport, int]:
    """Shrink outputs; if the results alone are still too many, keep those that fit, failures first."""
    results, cut = _fit(report.results, max_tokens - _tokens(_without_outputs(report)))
    fitted = report.model_copy(update={"results": results})
    if _tokens(fitted) <= max_tokens:
        return fitted, cut
    bare = [r.model_copy(update={"output": None}) for r in report.results]
    if report.estimate is not None:  # per-subtask estimates grow with the plan too; the totals stay
        report = report.model_copy(update={"estimate": report.estimate.model_copy(update={"tasks": []})})
    # a tenth kept spare: hosts count the JSON as sent (with spaces), not compacted as measured here
    # the graph keeps only the kept results' entries, which are counted with them
    empty = report.model_copy(update={"results": [], "results_omitted": len(bare), "graph": {}})
    room = max_tokens * 9 // 10 - _tokens(empty)
    keep: set[int] = set()
    for i in sorted(range(len(bare)), key=lambda i: (bare[i].status == "succeeded", i)):
        deps = report.graph.get(bare[i].task_id, [])
        room -= _tokens(bare[i]) + 2 + len(json.dumps({bare[i].task_id: deps})) // 3
        if room < 0:
            break
        keep.add(i)
    kept = [bare[i] for i in sorted(keep)]
    graph = {r.task_id: report.graph[r.task_id] for r in kept if r.task_id in report.graph}
    update = {"results": kept, "results_omitted": len(bare) - len(kept), "graph": graph}
    return report.model_copy(update=update), len(bare)


def _fit(results: list[SubagentResult], budget: int) -> tuple[list[SubagentResult], int]:
    view = fit_results("", results, max(budget, 256))
    fitted: list[SubagentResult] = []
    cut = 0
    for result, entry in zip(results, view.dependencies, strict=True):
        if entry.inclusion == "whole":
            fitted.append(result)
        else:
            cut += 1
            fitted.append(result.model_copy(update={"output": entry.output}))
    return fitted, cut


def _fit_handle(handle: RunHandle, max_tokens: int) -> RunHandle:
    """``handle`` with its tasks cut short (plan order kept) to fit ``max_tokens``; tasks_omitted counts the rest."""
    room = max_tokens - _tokens(handle.model_copy(update={"tasks": [], "tasks_omitted": len(handle.tasks)}))
    kept = 0
    for task in handle.tasks:
        room -= _tokens(task) + 1
        if room < 0:
            break
        kept += 1
    return handle.model_copy(update={"tasks": handle.tasks[:kept], "tasks_omitted": len(handle.tasks) - kept})


def _without_outputs(report: RunReport) -> RunReport:
    return report.model_copy(update={"results": [r.model_copy(update={"output": None}) for r in report.results]})


def _tokens(model: BaseModel) -> int:
    return estimate_tokens(json.dumps(model.model_dump(mode="json"), separators=(",", ":")))
