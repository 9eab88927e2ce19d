"""Whether a list of subtasks can be a plan: a non-empty DAG of unique ids within the size limit, said in words
a person can act on (the offending ids, at most ``MAX_LISTED`` of them).

Used by the ``Plan`` validator and by the executor; it reads only ``id`` and ``depends_on``, so the contracts
can depend on it without a cycle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .graph import find_cycle

if TYPE_CHECKING:
    from ..contracts import Subtask

HARD_MAX_SUBTASKS = 20_000
"""A ceiling no configuration can lift; the configured maximum (default much lower) applies first."""

MAX_LISTED = 20
"""Ids an error message lists before saying how many more there are, so a huge plan's error stays short."""


def some_of(items: list[str], sep: str = ", ") -> str:
    """The first ``MAX_LISTED`` of ``items`` joined by ``sep``, then "and N more" if there are more."""
    shown = sep.join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown} and {len(items) - MAX_LISTED:,} more"


def check_subtasks(subtasks: Sequence[Subtask], max_subtasks: int = HARD_MAX_SUBTASKS) -> None:
    """Raise ``ValueError`` naming the offending ids if ``subtasks`` do not form a valid DAG."""
    if not subtasks:
        raise ValueError("the plan has no subtasks; a plan needs at least one")
    if len(subtasks) > max_subtasks:
        raise ValueError(
            f"the plan has {len(subtasks)} subtasks, more than the maximum of {max_subtasks}; "
            "merge subtasks or raise max_subtasks"
        )
    seen: set[str] = set()
    duplicates: list[str] = []
    for s in subtasks:
        if s.id in seen and s.id not in duplicates:
            duplicates.append(s.id)
        seen.add(s.id)
    if duplicates:
        raise ValueError(f"duplicate subtask ids: {some_of(duplicates)}; every id must be unique")
    for s in subtasks:
        counts = Counter(s.depends_on)
        repeated = [f"{d!r} {_times(n)}" for d, n in counts.items() if n > 1]
        if repeated:
            raise ValueError(f"subtask {s.id} lists {some_of(repeated, ', ')} in depends_on; list each dependency once")
    selfish = [s.id for s in subtasks if s.id in s.depends_on]
    if selfish:
        raise ValueError(f"subtasks depend on themselves: {some_of(selfish)}")
    unknown = [f"{s.id} -> {d}" for s in subtasks for d in s.depends_on if d not in seen]
    if unknown:
        raise ValueError(f"unknown dependency ids: {some_of(unknown)}; depends_on must name subtask ids")
    cycle = find_cycle({s.id: s.depends_on for s in subtasks})
    if cycle:
        raise ValueError(f"dependency cycle: {some_of(cycle, ' -> ')}; a plan must be acyclic")


def _times(n: int) -> str:
    return "twice" if n == 2 else f"{n:,} times"
