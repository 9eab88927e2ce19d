"""What a subtask (or the synthesizer) sees of earlier results, fitted to a token budget. Pure: no I/O.

Every result given appears exactly once, in the given order, with its id (and its status unless it
succeeded); empty fields of an output (``""``, ``[]``, ``{}``, null) are left out. When
the whole outputs do not fit, a water level is set over the output sizes: outputs under it stay
whole, larger ones are shrunk to it (so the largest are cut first and small ones survive), and an
output that cannot shrink that far is elided with a note giving its size. Shrinking never cuts a
JSON value mid-way (see ``shrink``). ``render()`` stays within ``budget_tokens`` by
``estimate_tokens`` whenever the skeleton fits: the task statement plus, per result, its id,
status, notes and the cheaper of its whole or elided output. When even that skeleton exceeds the
budget, the skeleton is returned with ``over_budget=True``; the task is never cut.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..contracts import JsonObject, SubagentResult, TaskStatus
from .shrink import Shrinker, dumps, truncate_string

CHARS_PER_TOKEN = 3.5
"""ASCII characters per token in ``estimate_tokens``; real tokenizers average nearer 4 on English prose."""

ERROR_NOTE_CHARS = 1_000
"""Error text longer than this is cut (at a word boundary) in a result's note."""

_MAX_ROUNDS = 6  # water-level corrections before falling back to the skeleton
_ROUND_MARGIN = 8  # extra tokens taken off the slack per correction, so rounds converge
_SHRINK_NOTE_TOKENS = 24  # a shrunk entry's note, less an elided entry's, as budgeted up front

Inclusion = Literal["whole", "summary", "shrunk", "elided"]
"""How much of a result's output made it in: all of it (or null if it had none), only its ``summary``
field (see ``read_by_summary``), a cut copy, or none."""


def estimate_tokens(text: str) -> int:
    """A conservative token estimate: ASCII at 3.5 characters a token, any other character a token each.

    For budgets and cost estimates, not billing: it errs high so that a fitted context really fits.
    """
    if text.isascii():
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / CHARS_PER_TOKEN) + len(text) - ascii_chars


class DependencyEntry(BaseModel):
    """One earlier result as a reader sees it: always its id and status, and as much output as fits."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    role: str
    status: TaskStatus
    inclusion: Inclusion
    output: JsonObject | None
    note: str | None = None

    def as_json(self) -> JsonObject:
        """The entry as rendered, lean: ``status`` unless succeeded, ``inclusion`` unless whole, ``note`` if any;
        an entry read by its summary has ``summary`` in place of ``output``."""
        out: JsonObject = {"task_id": self.task_id}
        if self.status != "succeeded":
            out["status"] = self.status
        if self.inclusion == "summary" and self.output is not None:
            out["summary"] = self.output.get("summary")  # the one field left: said once, not wrapped
        else:
            if self.inclusion != "whole":
                out["inclusion"] = self.inclusion
            out["output"] = self.output
        if self.note is not None:
            out["note"] = self.note
        return out


class DependencyContext(BaseModel):
    """The task statement and earlier results, fitted to ``budget_tokens`` (``used_tokens`` by estimate)."""

    model_config = ConfigDict(frozen=True)

    task: str
    dependencies: list[DependencyEntry]
    budget_tokens: int
    used_tokens: int
    over_budget: bool = False
    """True when even the skeleton (ids, statuses, notes, no outputs) exceeds the budget."""

    def render(self, *, include_task: bool = True) -> str:
        """Compact JSON for a prompt; ``include_task=False`` when the prompt states the task elsewhere."""
        return _render(self.task if include_task else None, self.dependencies, self.budget_tokens, self.over_budget)


def build_context(task: str, dependencies: Sequence[SubagentResult], budget_tokens: int) -> DependencyContext:
    """What a subtask sees: the task and its declared dependencies' outputs, in order, within the budget;
    an output read whole without its ``summary`` (``without_summary``)."""
    return _fit(task, dependencies, budget_tokens, summaries=False)


def fit_results(
    task: str,
    results: Sequence[SubagentResult],
    budget_tokens: int,
    by_summary: Collection[str] = (),
    *,
    summaries: bool = True,
) -> DependencyContext:
    """Every result of a run within the budget, failed and skipped ones with their errors: what the synthesizer
    sees, and what a tool result keeps of outputs too big for a host (``compact.py``).

    The results named in ``by_summary`` show only their output's ``summary`` (``read_by_summary``); with
    ``summaries=False`` the others, read whole, show everything but it (``without_summary``).
    """
    return _fit(task, results, budget_tokens, frozenset(by_summary), summaries=summaries)


def without_summary(output: JsonObject) -> JsonObject:
    """``output`` without its ``summary`` when the rest says it at more length: a model reading the whole
    output would pay for it twice. A summary longer than the rest holds content, and stays."""
    summary = _summary(output)
    rest = {k: v for k, v in output.items() if k != "summary"}
    return rest if rest and summary is not None and len(summary) < len(dumps(rest)) else output


def read_by_summary(results: Sequence[SubagentResult], graph: Mapping[str, Sequence[str]]) -> list[str]:
    """The results a synthesizer can read by their summary alone: the content went into later subtasks.

    One qualifies when it succeeded, its output has a ``summary`` besides other content, and some
    subtask depends on it and every subtask that does succeeded (so their outputs, read whole,
    carry what it found). Final results, and any result a failed or skipped subtask needed, stay whole.
    """
    status = {r.task_id: r.status for r in results}
    users: dict[str, list[str]] = {}
    for task_id, deps in graph.items():
        for dep in deps:
            users.setdefault(dep, []).append(task_id)
    return [
        r.task_id
        for r in results
        if r.status == "succeeded"
        and _summary(r.output) is not None
        and len(_without_empties(r.output or {})) > 1
        and users.get(r.task_id)
        and all(status.get(u) == "succeeded" for u in users[r.task_id])
    ]


def _render(task: str | None, entries: Sequence[DependencyEntry], budget: int, over_budget: bool) -> str:
    doc: JsonObject = {} if task is None else {"task": task}
    if over_budget:
        doc["note"] = f"even the ids, statuses and notes exceed the {budget:,}-token budget; all outputs elided"
    doc["dependencies"] = [e.as_json() for e in entries]
    return dumps(doc)


def _context(task: str, entries: list[DependencyEntry], budget: int, *, over_budget: bool = False) -> DependencyContext:
    used = estimate_tokens(_render(task, entries, budget, over_budget))
    return DependencyContext(
        task=task, dependencies=entries, budget_tokens=budget, used_tokens=used, over_budget=over_budget
    )


class _Item:
    """One result with its output measured once, and a shrinker that remembers its attempts."""

    def __init__(self, result: SubagentResult, summary_only: bool = False, summaries: bool = True) -> None:
        self.result = result
        full = None if result.output is None else _without_empties(result.output)
        summary = _summary(full) if summary_only else None
        self.complete: Inclusion = "whole" if summary is None else "summary"
        if summary is not None:
            full = {"summary": summary}
        self.output = full if full is None or summaries else without_summary(full)
        self.base_note = _status_note(result)
        self.tokens = 0 if self.output is None else estimate_tokens(dumps(self.output))
        self._shrinker = None if full is None else Shrinker(full, estimate_tokens)  # a cut copy keeps the summary

    @property
    def fittable(self) -> bool:
        """Has an output, and dropping it saves tokens (an elided note can outweigh a tiny output)."""
        if self.output is None:
            return False
        with_null = _cost(self.entry(self.complete, None, None))  # the unfitted entry with "null" for its output
        return with_null - 1 + self.tokens > _cost(self.elided())

    def entry(self, inclusion: Inclusion, output: JsonObject | None, note: str | None) -> DependencyEntry:
        r = self.result
        note = "; ".join(n for n in (self.base_note, note) if n) or None
        return DependencyEntry(
            task_id=r.task_id, role=r.role, status=r.status, inclusion=inclusion, output=output, note=note
        )

    def whole(self) -> DependencyEntry:
        """As much as the reader gets before any budget cut: the whole output, or its summary (``complete``)."""
        return self.entry(self.complete, self.output, None)

    def elided(self) -> DependencyEntry:
        return self.entry("elided", None, f"output elided for the budget (~{self.tokens:,} tokens)")

    def fitted(self, cap: int) -> DependencyEntry:
        """Whole if the output is within ``cap`` tokens, else shrunk to ``cap``, else elided."""
        if self._shrinker is None or self.tokens <= cap:
            return self.whole()
        shrunk = self._shrinker.shrink(cap)
        if shrunk is None:
            return self.elided()
        note = f"output shrunk for the budget from ~{self.tokens:,} to ~{shrunk.tokens:,} tokens: {shrunk.describe()}"
        return self.entry("shrunk", shrunk.value, note)


def _fit(
    task: str,
    results: Sequence[SubagentResult],
    budget: int,
    by_summary: frozenset[str] = frozenset(),
    *,
    summaries: bool = True,
) -> DependencyContext:
    items = [_Item(r, r.task_id in by_summary, summaries) for r in results]
    whole = _context(task, [it.whole() for it in items], budget)
    if whole.used_tokens <= budget:
        return whole
    fittable = [it.fittable for it in items]
    floor_entries = [it.elided() if fit else it.whole() for it, fit in zip(items, fittable, strict=True)]
    floor = _context(task, floor_entries, budget)
    if floor.used_tokens > budget:
        return _context(task, floor_entries, budget, over_budget=True)
    sizes = [it.tokens for it, fit in zip(items, fittable, strict=True) if fit]
    slack = budget - floor.used_tokens
    cap = _water_level(sizes, slack, _SHRINK_NOTE_TOKENS)
    for _ in range(_MAX_ROUNDS):
        entries = [it.fitted(cap) if fit else it.whole() for it, fit in zip(items, fittable, strict=True)]
        fitted = _context(task, entries, budget)
        if fitted.used_tokens <= budget:
            return fitted
        over = fitted.used_tokens - budget
        slack -= over + _ROUND_MARGIN
        cut = math.ceil(over / max(1, sum(size > cap for size in sizes)))
        cap = min(_water_level(sizes, slack, _SHRINK_NOTE_TOKENS), cap - cut)
        if cap <= 0:
            break
    return floor


def _water_level(sizes: Sequence[int], available: int, overhead: int) -> int:
    """The largest cap with ``sum(min(size, cap) + overhead if size > cap) <= available``.

    Sizes at or under the cap stay whole; each larger one is shrunk to the cap and pays ``overhead``
    (its longer note).
    """
    ordered = sorted(sizes)
    for i, size in enumerate(ordered):
        left = len(ordered) - i
        if (size + overhead) * left > available:
            return max(0, available // left - overhead)
        available -= size
    return ordered[-1] if ordered else 0


def _without_empties(output: JsonObject) -> JsonObject:
    """``output`` without top-level fields that say nothing: empty strings, lists and objects, and nulls."""
    return {k: v for k, v in output.items() if v not in ("", [], {}, None)}


def _summary(output: JsonObject | None) -> str | None:
    """An output's non-blank ``summary`` string, if it has one."""
    summary = (output or {}).get("summary")
    return summary if isinstance(summary, str) and summary.strip() else None


def _status_note(result: SubagentResult) -> str | None:
    if result.status == "succeeded":
        return None
    error = (result.error or "").strip() or f"{result.status}, no error text recorded"
    return truncate_string(error, ERROR_NOTE_CHARS)


def _cost(entry: DependencyEntry) -> int:
    return estimate_tokens(dumps(entry.as_json()))
