"""Short readable text for each tool result; the full data travels as structured content.

Hosts differ in which they show, and some cap tool output (Claude Code warns near 25k tokens), so
the text stays a summary and long values are cut here, never in the structured content.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from .contracts import JsonObject, OrchestrateResult, Plan, RunReport, Spend, SubagentResult, Synthesis, Usage
from .core.breakdown import CostBreakdown, CostLine, cost_breakdown
from .core.pricing import ModelPrice
from .handles import RunCounts, RunHandle
from .store.records import RunRecord, RunSummary
from .visible import visible

TEXT_PREVIEW_CHARS = 1_500
MAX_LISTED = 30
"""Subtasks listed one per line in a text (failures first); the rest are counted, so a text stays short at any size."""


def usage_line(usage: Usage, cost: float) -> str:
    """Tokens and cost; prompt-cache reads and writes are named when there were any (reads cost 0.1x input)."""
    cached = ""
    if usage.cache_read_tokens or usage.cache_write_tokens:
        cached = f" (+{usage.cache_read_tokens:,} read from cache, {usage.cache_write_tokens:,} written to it)"
    return f"{usage.input_tokens:,} in / {usage.output_tokens:,} out tokens{cached}, ${cost:.4f}"


def preview(value: JsonObject | None, limit: int = TEXT_PREVIEW_CHARS) -> str:
    """Compact JSON of ``value``, cut at ``limit`` characters with a note saying so."""
    text = json.dumps(value, ensure_ascii=False, indent=1)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [{len(text) - limit:,} more characters in the structured result]"


def plan_text(plan: Plan) -> str:
    count = f"{len(plan.subtasks)} subtask{'s' if len(plan.subtasks) != 1 else ''}"
    lines = [f"Plan {plan.plan_id}: {count}. {plan.summary}".rstrip()]
    for s in plan.subtasks[:MAX_LISTED]:
        after = f" (after {', '.join(s.depends_on[:5])}{'…' if len(s.depends_on) > 5 else ''})" if s.depends_on else ""
        size = f" ~{s.expected_output_tokens:,} tokens" if s.expected_output_tokens else ""
        tier = f", {s.tier}" if s.tier else ""
        lines.append(f"- {s.id} [{s.role}{tier}]{after}{size}: {one_line(s.instructions)}")
    if len(plan.subtasks) > MAX_LISTED:
        lines.append(f"- … {len(plan.subtasks) - MAX_LISTED:,} more subtasks, in the structured result")
    if plan.estimate is not None:
        e = plan.estimate
        lines.append(
            f"Estimate: ~${e.cost_usd:.4f} (worst case ${e.max_cost_usd:.4f}), ~{e.input_tokens + e.output_tokens:,} "
            f"tokens incl. synthesis; critical path {e.critical_path_subtasks} subtask(s)."
        )
        if e.batch_cost_usd is not None:
            lines.append(f"In batch mode (batch=true: subtasks at half price, slower): ~${e.batch_cost_usd:.4f}.")
    if plan.planning is not None:
        lines.append(f"Planning took {usage_line(plan.planning.usage, plan.planning.cost_usd)}.")
    lines.append("Run it with execute_plan, passing this plan (edit it first if you like).")
    return visible("\n".join(lines))


def result_text(result: SubagentResult) -> str:
    head = f"{result.task_id} [{result.role}] {result.status.upper()} on {result.model or 'no model'}"
    head += f" (escalated from {result.escalated_from})" if result.escalated_from else ""
    head += f" after {result.attempts} request(s), {usage_line(result.usage, result.cost_usd)}"
    if result.status != "succeeded":
        return visible(f"{head}\n{result.error or 'no error text'}")
    return visible(f"{head}\n{preview(result.output)}")


def report_text(report: RunReport, *, synthesized: bool = False, terminal: bool = False) -> str:
    """Run status, then one line per task; outputs stay in the structured content (``terminal``: in ``show --json``)."""
    tally: dict[str, int] = {}
    for r in report.results:
        tally[r.status] = tally.get(r.status, 0) + 1
    counts = ", ".join(f"{n} {status}" for status, n in tally.items())
    lines = [
        f"Run {report.run_id} {report.status.upper()}: {counts}; {report.makespan_s:.1f} s; "
        f"{usage_line(report.usage, report.cost_usd)}."
    ]
    if report.error is not None:
        lines.append(f"It failed because {report.error}")
    if report.estimate is not None:
        expected = sum(t.cost_usd for t in report.estimate.tasks)
        worst = sum(t.max_cost_usd for t in report.estimate.tasks)
        lines.append(
            f"Subtasks estimated beforehand: ~${expected:.4f} (worst case ${worst:.4f}); actual ${report.cost_usd:.4f}."
        )
    if report.batch_saved_usd is not None:
        lines.append(batch_line(report.batch_saved_usd))
    if report.over_budget:
        lines.append(report.over_budget)
    listed = _first_listed(report.results, key=lambda r: r.status == "succeeded")
    for r in listed:
        detail = one_line(r.error or "", 200) if r.status != "succeeded" else _output_gist(r.output)
        lines.append(f"- {r.task_id} [{r.role}] {r.status}: {detail}")
    if len(listed) < len(report.results):
        lines.append(f"- … {len(report.results) - len(listed):,} more subtasks (succeeded) not listed here")
    if terminal:
        lines.append(f"Full outputs: subagent-mcp show {report.run_id} --json")
    else:
        merge = "" if synthesized else f" Merge them with synthesize(run_id={report.run_id!r})."
        lines.append(f"Full outputs are in the structured result.{merge}")
    return visible("\n".join(lines))


def synthesis_text(synthesis: Synthesis) -> str:
    head = "" if synthesis.complete else "INCOMPLETE: not every subtask succeeded.\n\n"
    parts = [head + synthesis.answer]
    if synthesis.missing:
        parts.append("Did not succeed:\n" + "\n".join(f"- {m}" for m in synthesis.missing))
    if synthesis.gaps:
        parts.append("Gaps:\n" + "\n".join(f"- {g}" for g in synthesis.gaps))
    return visible("\n\n".join(parts))


def orchestrate_text(result: OrchestrateResult, *, terminal: bool = False) -> str:
    if result.synthesis is None:
        answer = f"Synthesis failed: {result.synthesis_error}. The run's results are below."
    else:
        answer = synthesis_text(result.synthesis)
    what = "planning, every subtask attempt, synthesis" if result.plan.planning else "every subtask attempt, synthesis"
    spent = f"In all ({what}): {usage_line(result.total.usage, result.total.cost_usd)}"
    report = report_text(result.report, synthesized=result.synthesis is not None, terminal=terminal)
    return visible(f"{answer}\n\n---\n{report}\n{spent}")


def counts_text(counts: RunCounts) -> str:
    """ "3/8 done, 1 failed, 2 running" (zero counts left out)."""
    extra = {
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "skipped": counts.skipped,
        "cancelled": counts.cancelled,
        "running": counts.running,
        "pending": counts.pending,
    }
    return ", ".join([f"{counts.done}/{counts.total} done", *(f"{n} {name}" for name, n in extra.items() if n)])


def handle_text(handle: RunHandle) -> str:
    """A run without a final result yet: where it stands, what it spent, and what to call next."""
    phase = f" ({handle.phase})" if handle.status == "running" and handle.phase else ""
    progress = counts_text(handle.counts) if handle.counts.total else "no subtask started yet"
    return visible(
        f"Run {handle.run_id} is {handle.status.upper()}{phase}: {progress}; "
        f"{usage_line(handle.spent.usage, handle.spent.cost_usd)} spent so far; {handle.elapsed_s:.0f} s.\n"
        f"{handle.next}"
    )


def runs_text(runs: Sequence[RunSummary]) -> str:
    """One line per run: id, status (live progress if running here), cost in all, task."""
    lines: list[str] = []
    for r in runs:
        state = f"{r.status} ({counts_text(r.live.counts)})" if r.live else r.status
        counts = ", ".join(f"{n} {status}" for status, n in r.counts.items())
        lines.append(f"{r.run_id} {state} ${r.total_cost_usd:.4f} in all [{counts}] {one_line(r.task, None)}")
    return visible("\n".join(lines)) or "No runs yet."


def total_text(record: RunRecord) -> str:
    """What a stored run cost in all, labelled by part (the same total the run printed when it ended)."""
    parts = [("planning", record.planning), ("subtasks, every attempt", None), ("synthesis", record.synthesis_spend)]
    shown = [
        f"{name} ${(spend.cost_usd if spend else record.cost_usd):.4f}"
        for name, spend in parts
        if spend is None or spend.usage.total_tokens
    ]
    total = record.total
    return f"In all: {usage_line(total.usage, total.cost_usd)} ({' + '.join(shown)})"


def record_breakdown(plan: Plan, record: RunRecord, prices: Mapping[str, ModelPrice]) -> CostBreakdown:
    """A stored run's cost per subtask (in plan order) and per model, for ``show`` and the run resource."""
    order = {s.id: i for i, s in enumerate(plan.subtasks)}
    results = sorted(record.results.values(), key=lambda r: order.get(r.task_id, len(order)))
    synthesis_model = record.synthesis.model if record.synthesis else None
    subtasks = Spend(usage=record.usage, cost_usd=record.cost_usd)
    return cost_breakdown(
        results,
        subtasks,
        (record.planning, None),
        (record.synthesis_spend, synthesis_model),
        prices,
        batch=record.options.batch,
    )


def breakdown_text(breakdown: CostBreakdown) -> str:
    """Each subtask's model, tokens (in, out, cache read, cache write) and cost; then per model, planning, synthesis."""
    rows = [["subtask", "model", "in", "out", "cache read", "cache write", "cost"]]
    listed = breakdown.subtasks[:MAX_LISTED]
    rows += [_row(line.label, line) for line in listed]
    if breakdown.earlier_attempts is not None:
        rows.append(_row("(earlier attempts)", breakdown.earlier_attempts))
    rows.append(["by model", "", "", "", "", "", ""])
    rows += [_row("", line) for line in breakdown.models]
    rows += [_row(line.label, line) for line in (breakdown.planning, breakdown.synthesis) if line.usage.total_tokens]
    rows.append(_row("total", breakdown.total))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["Cost breakdown:"]
    for row in rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
    if len(breakdown.subtasks) > len(listed):
        lines.insert(len(listed) + 2, f"  … {len(breakdown.subtasks) - len(listed):,} more subtasks, in --json")
    if breakdown.total.cache_saved_usd:
        lines.append(f"Cache reads saved ${breakdown.total.cache_saved_usd:.4f} against paying the full input price.")
    if breakdown.batch_saved_usd is not None:
        lines.append(batch_line(breakdown.batch_saved_usd))
    return visible("\n".join(lines))


def batch_line(saved_usd: float) -> str:
    """What batch mode saved, said the same way in reports and ``show``."""
    return (
        f"Batch mode: subtasks went through the Message Batches API at half price; the discount saved "
        f"${saved_usd:.4f} against running them live (planning and synthesis are live calls)."
    )


def _row(label: str, line: CostLine) -> list[str]:
    u = line.usage
    return [
        label, line.model or "", f"{u.input_tokens:,}", f"{u.output_tokens:,}", f"{u.cache_read_tokens:,}",
        f"{u.cache_write_tokens:,}", f"${line.cost_usd:.4f}",
    ]  # fmt: skip


def _first_listed(results: Sequence[SubagentResult], key: Callable[[SubagentResult], bool]) -> list[SubagentResult]:
    """At most ``MAX_LISTED`` results in their order, those with a false ``key`` (failures) chosen first."""
    if len(results) <= MAX_LISTED:
        return list(results)
    chosen = set(sorted(range(len(results)), key=lambda i: (key(results[i]), i))[:MAX_LISTED])
    return [r for i, r in enumerate(results) if i in chosen]


def _output_gist(output: JsonObject | None) -> str:
    if not output:
        return "(no output)"
    summary = output.get("summary")
    return one_line(summary if isinstance(summary, str) else preview(output, 200), 200)


def one_line(text: str, limit: int | None = 160) -> str:
    """``text`` on one line (whitespace folded, controls made visible), cut at ``limit`` characters if given."""
    flat = visible(" ".join(text.split()), one_line=True)
    return flat if limit is None or len(flat) <= limit else flat[: limit - 1] + "…"
