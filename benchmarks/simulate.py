"""Zero-overhead list schedules in virtual time: what a policy could reach, to read the measured ratios against."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

from subagent_mcp.core.graph import dependents_of, downstream_lengths

from .dags import Workload

Key = Callable[[str], tuple[float, int]]


def list_schedule(w: Workload, cap: int | None, key: Key) -> float:
    """Makespan when, every time a slot frees up, the ready task with the smallest ``key`` starts at once."""
    graph = w.plan.graph()
    dependents = dependents_of(graph)
    waiting = {t: len(set(deps)) for t, deps in graph.items()}
    ready = [(key(t), t) for t, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and (cap is None or len(running) < cap):
            task_id = heapq.heappop(ready)[1]
            heapq.heappush(running, (now + w.latency[task_id], task_id))
        now, done = heapq.heappop(running)
        for child in dependents[done]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (key(child), child))
    return now


def critical_path_key(w: Workload, weights: Mapping[str, float] | None) -> Key:
    """Longest remaining path first (in tasks without weights, else in them), then plan order."""
    graph = w.plan.graph()
    length = downstream_lengths(graph, weights)
    index = {t: i for i, t in enumerate(graph)}
    return lambda t: (-length[t], index[t])
