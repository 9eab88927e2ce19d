"""Merge a run's results into one answer that says plainly what is incomplete.

What failed or was skipped is listed by us from the statuses, never left to the model to notice;
the model writes the answer and its gaps from a budgeted view of every result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import prompts
from .backends.base import ModelBackend
from .backends.budgeted import billed_model
from .contracts import CompletionRequest, ModelMessage, SubagentResult, Synthesis
from .core.context import fit_results, read_by_summary
from .core.pricing import cost_usd
from .planning import SYNTHESIS_MAX_TOKENS
from .settings import Settings
from .structured import complete_json


def missing_lines(results: Sequence[SubagentResult]) -> list[str]:
    """One line per result that did not succeed: id, role, status and the reason."""
    return [
        f"{r.task_id} ({r.role}) {r.status}: {r.error or 'no reason recorded'}"
        for r in results
        if r.status != "succeeded"
    ]


async def synthesize(
    backend: ModelBackend,
    settings: Settings,
    task: str,
    results: Sequence[SubagentResult],
    graph: Mapping[str, Sequence[str]] | None = None,
) -> Synthesis:
    """Ask the synthesis model for the final answer; with no successful result, say so without a call.

    ``graph`` (each subtask's depends_on, when the results are a plan's): with ``synthesis_reads``
    "final", results that later subtasks used are read by their summary (``read_by_summary``).

    Raises:
        ModelError: the synthesis model failed (the results themselves are untouched).
    """
    missing = missing_lines(results)
    if not any(r.status == "succeeded" for r in results):
        return Synthesis(
            answer="No subtask succeeded, so there is nothing to synthesize. See `missing` for what happened.",
            complete=False,
            missing=missing,
        )
    shown = prompts.synthesis_task(task)  # the results carry the work; a long document in the task is cut here
    by_summary = read_by_summary(results, graph) if graph is not None and settings.synthesis_reads == "final" else []
    view = fit_results(shown, results, settings.context_budget_tokens, by_summary, summaries=False)
    results_json = view.render(include_task=False)
    cut = view.over_budget or any(e.inclusion in ("shrunk", "elided") for e in view.dependencies)
    request = CompletionRequest(
        model=settings.synthesis_model,
        system=prompts.synthesis_system(incomplete=bool(missing) or cut),
        messages=[
            ModelMessage(
                role="user",
                content=prompts.synthesis_user(shown, results_json, missing, by_summary=bool(by_summary)),
            )
        ],
        output_schema=prompts.SYNTHESIS_SCHEMA,
        max_tokens=SYNTHESIS_MAX_TOKENS,
        label="synthesis",
    )
    out = await complete_json(backend, request)
    gaps = [str(g) for g in out.output.get("gaps", [])]
    return Synthesis(
        answer=str(out.output["answer"]),
        complete=not missing,
        missing=missing,
        gaps=gaps,
        read_by_summary=by_summary,
        usage=out.usage,
        cost_usd=cost_usd(out.usage, billed_model(out.model, request.model, settings.prices), settings.prices),
        model=out.model,
    )
