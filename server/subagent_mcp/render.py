"""Short readable text for each tool result; the full data travels as structured content.

Hosts differ in which they show, and some cap tool output (Claude Code warns near 25k tokens), so
the text stays a summary and long values are cut here, never in the structured content.
"""

from __future__ import annotations

import json

from .contracts import JsonObject, Plan, SubagentResult, Usage

TEXT_PREVIEW_CHARS = 1_500


def usage_line(usage: Usage, cost: float) -> str:
    return f"{usage.input_tokens:,} in / {usage.output_tokens:,} out tokens, ${cost:.4f}"


def preview(value: JsonObject | None, limit: int = TEXT_PREVIEW_CHARS) -> str:
    """Compact JSON of ``value``, cut at ``limit`` characters with a note saying so."""
    text = json.dumps(value, ensure_ascii=False, indent=1)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [{len(text) - limit:,} more characters in the structured result]"


def plan_text(plan: Plan) -> str:
    lines = [f"Plan {plan.plan_id}: {len(plan.subtasks)} subtasks. {plan.summary}".rstrip()]
    for s in plan.subtasks:
        after = f" (after {', '.join(s.depends_on)})" if s.depends_on else ""
        lines.append(f"- {s.id} [{s.role}]{after}: {_one_line(s.instructions)}")
    lines.append("Run it with execute_plan, passing this plan (edit it first if you like).")
    return "\n".join(lines)


def result_text(result: SubagentResult) -> str:
    head = f"{result.task_id} [{result.role}] {result.status.upper()} on {result.model or 'no model'}"
    head += f" after {result.attempts} request(s), {usage_line(result.usage, result.cost_usd)}"
    if result.status != "succeeded":
        return f"{head}\n{result.error or 'no error text'}"
    return f"{head}\n{preview(result.output)}"


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
