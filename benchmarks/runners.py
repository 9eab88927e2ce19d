"""``run_task`` implementations to drive the executors with; swap in another to time a different path."""

from __future__ import annotations

import time
from collections.abc import Mapping

import anyio

from subagent_mcp.contracts import SubagentResult, Subtask
from subagent_mcp.core.executor import RunTask


def sleeping(latency: Mapping[str, float]) -> RunTask:
    """Each task takes its scripted latency (``anyio.sleep``) and succeeds."""

    async def run_task(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
        await anyio.sleep(latency[subtask.id])
        return SubagentResult(task_id=subtask.id, role=subtask.role, status="succeeded", output={})

    return run_task


def instant(task_ids: list[str]) -> RunTask:
    """Each task returns a prebuilt result at once, so only the scheduler's own work is timed."""
    ready = {t: SubagentResult(task_id=t, role="worker", status="succeeded", output={}) for t in task_ids}

    async def run_task(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
        return ready[subtask.id]

    return run_task


def timing(run_task: RunTask) -> tuple[RunTask, dict[str, float]]:
    """Wrap ``run_task`` to record how long each call really took (a timer wakes late; a reply arrives late)."""
    took: dict[str, float] = {}

    async def timed_task(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
        started = time.perf_counter()
        try:
            return await run_task(subtask, deps)
        finally:
            took[subtask.id] = time.perf_counter() - started

    return timed_task, took
