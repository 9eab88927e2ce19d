"""The wave-barrier executor, written the tutorial's way, as the figure to beat.

Gather every ready task, run the whole wave under a concurrency cap, wait for all of it, repeat.
A wave lasts as long as its slowest task, so idle slots pile up behind stragglers.
"""

from __future__ import annotations

import time

import anyio

from subagent_mcp.contracts import Plan, SubagentResult, Subtask
from subagent_mcp.core.executor import RunTask


async def execute_waves(plan: Plan, run_task: RunTask, *, max_concurrency: int | None) -> dict[str, SubagentResult]:
    """Run ``plan`` wave by wave; a task whose dependency did not succeed is skipped."""
    limiter = anyio.CapacityLimiter(max_concurrency or len(plan.subtasks))
    results: dict[str, SubagentResult] = {}
    pending = list(plan.subtasks)
    t0 = time.monotonic()

    async def run_one(subtask: Subtask) -> None:
        async with limiter:
            started = time.monotonic() - t0
            try:
                result = await run_task(subtask, {d: results[d] for d in subtask.depends_on})
            except Exception as exc:
                result = SubagentResult(task_id=subtask.id, role=subtask.role, status="failed", error=repr(exc))
            finished = time.monotonic() - t0
            results[subtask.id] = result.model_copy(update={"started_at_s": started, "finished_at_s": finished})

    while pending:
        wave = [s for s in pending if all(d in results for d in s.depends_on)]
        pending = [s for s in pending if not all(d in results for d in s.depends_on)]
        async with anyio.create_task_group() as tg:
            for subtask in wave:
                if all(results[d].status == "succeeded" for d in subtask.depends_on):
                    tg.start_soon(run_one, subtask)
                else:
                    results[subtask.id] = SubagentResult(task_id=subtask.id, role=subtask.role, status="skipped")
    return results
