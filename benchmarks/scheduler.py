"""The figures: makespan against its lower bound per DAG family, wide fan-out, overhead, a 10,000-task plan."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from subagent_mcp.core.executor import RunTask, execute

from . import dags, reachable, runners
from .baseline import execute_waves
from .dags import Workload, cap_label
from .simulate import critical_path_key, list_schedule

MakeRunTask = Callable[[Workload], RunTask]
"""Builds the ``run_task`` for a workload: sleeps by default; a fake-API variant can be passed instead."""

Runner = Callable[[Workload, RunTask, int | None], Awaitable[None]]


async def _event_critical_path(w: Workload, run_task: RunTask, cap: int | None) -> None:
    await execute(w.plan, run_task, max_concurrency=cap, priority="critical_path")


async def _event_estimates(w: Workload, run_task: RunTask, cap: int | None) -> None:
    await execute(w.plan, run_task, max_concurrency=cap, weights=w.estimates())


async def _event_fifo(w: Workload, run_task: RunTask, cap: int | None) -> None:
    await execute(w.plan, run_task, max_concurrency=cap, priority="fifo")


async def _waves(w: Workload, run_task: RunTask, cap: int | None) -> None:
    await execute_waves(w.plan, run_task, max_concurrency=cap)


async def _event_with_events(w: Workload, run_task: RunTask, cap: int | None) -> None:
    await execute(w.plan, run_task, max_concurrency=cap, on_event=lambda _: None)


EXECUTORS: dict[str, Runner] = {
    "critical_path": _event_critical_path,
    "cp+estimates": _event_estimates,
    "fifo": _event_fifo,
    "waves": _waves,
}
OVERHEAD: dict[str, Runner] = {**EXECUTORS, "cp + on_event": _event_with_events}


def sleeping(w: Workload) -> RunTask:
    return runners.sleeping(w.latency)


@dataclass(frozen=True)
class Row:
    """Makespan / lower bound for each executor on one workload at one cap."""

    workload: str
    tasks: int
    cap: int | None
    lower_bound_s: float
    ratio: dict[str, float]
    simulated: dict[str, float]
    """Zero-overhead list schedules / LB: critical path in tasks, by the estimates, by the true latencies."""


async def timed(runner: Runner, w: Workload, run_task: RunTask, cap: int | None) -> float:
    started = time.perf_counter()
    await runner(w, run_task, cap)
    return time.perf_counter() - started


async def makespan_rows(
    workloads: list[Workload], caps: list[int | None], make_run_task: MakeRunTask = sleeping
) -> list[Row]:
    rows: list[Row] = []
    for w in workloads:
        for cap in caps:
            bound = w.lower_bound_s(cap)
            ratio: dict[str, float] = {}
            for name, runner in EXECUTORS.items():
                run_task, took = runners.timing(make_run_task(w))
                makespan = await timed(runner, w, run_task, cap)
                ratio[name] = makespan / w.lower_bound_s(cap, took)
            simulated = {
                "sim tasks": list_schedule(w, cap, critical_path_key(w, None)) / bound,
                "sim est.": list_schedule(w, cap, critical_path_key(w, w.estimates())) / bound,
                "sim oracle": list_schedule(w, cap, critical_path_key(w, w.latency)) / bound,
            }
            rows.append(Row(w.name, w.size, cap, bound, ratio, simulated))
    return rows


async def oversleep_ms(n: int = 50) -> float:
    """How late ``anyio.sleep`` wakes on this machine, on average (the event loop waits in whole ms)."""
    late = 0.0
    for i in range(n):
        planned = 0.02 + 0.001 * (i % 7)
        started = time.perf_counter()
        await anyio.sleep(planned)
        late += time.perf_counter() - started - planned
    return late / n * 1e3


async def overhead_us_per_task(
    n: int, cap: int | None, repeats: int = 15, runner: Runner = _event_critical_path
) -> tuple[float, float]:
    """Best and median wall time per task at zero latency (a prebuilt result comes back at once)."""
    w = dags.layered(n, seed=7)
    run_task = runners.instant([s.id for s in w.plan.subtasks])
    times = [await timed(runner, w, run_task, cap) / n * 1e6 for _ in range(repeats)]
    return min(times), statistics.median(times)


async def scale_figures(n: int) -> tuple[float, float]:
    """Wall seconds (best of 5) and peak extra MiB (tracemalloc) to run an ``n``-task plan at zero latency."""
    w = dags.layered(n, seed=11)
    run_task = runners.instant([s.id for s in w.plan.subtasks])
    wall = min([await timed(_event_critical_path, w, run_task, None) for _ in range(5)])
    gc.collect()
    tracemalloc.start()
    try:
        await execute(w.plan, run_task)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return wall, peak / 2**20


def render_rows(rows: list[Row]) -> str:
    names = [*EXECUTORS, "sim tasks", "sim est.", "sim oracle"]
    head = f"{'workload':<20}{'tasks':>6}{'K':>5}{'LB s':>7}" + "".join(f"{n:>14}" for n in names)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f"{({**r.ratio, **r.simulated})[n]:>14.3f}" for n in names)
        lines.append(f"{r.workload:<20}{r.tasks:>6}{cap_label(r.cap):>5}{r.lower_bound_s:>7.2f}{cells}")
    return "\n".join(lines)


async def run_all(median_s: float, make_run_task: MakeRunTask = sleeping) -> None:
    """Print every figure; ``median_s`` scales the lognormal latencies (the shape is what matters)."""
    workloads = [
        dags.layered(30, seed=1, median_s=median_s),
        dags.layered(30, seed=2, median_s=median_s),
        dags.layered(100, seed=3, median_s=median_s),
        dags.layered(100, seed=4, median_s=median_s),
        dags.fan_out(48, seed=5, median_s=median_s),
        dags.chain_with_branches(12, seed=6, median_s=median_s),
    ]
    print(f"makespan / lower bound (LB = max(critical path, total work / K)); median task {median_s:g} s, sigma 0.5")
    late = await oversleep_ms()
    print(f"measured columns: LB from what each task took in that run (a sleep here wakes {late:.2f} ms late);")
    print("LB s: the bound by the scripted latencies, which the sim columns divide by")
    print(f"sim columns: virtual time, scripted latencies; estimates = latency x lognormal(0, {dags.ESTIMATE_SIGMA})")
    print(render_rows(await makespan_rows(workloads, [4, None], make_run_task)))
    print()
    reachable.run_all()

    wide = dags.uniform(dags.fan_out(48, seed=0), 0.5)
    print("\n48 independent 0.5 s tasks, K=48: makespan / 0.5 s")
    for name, runner in EXECUTORS.items():
        print(f"  {name:<15}{await timed(runner, wide, make_run_task(wide), 48) / 0.5:.3f}")

    print("\nscheduler overhead at zero latency, 2,000-task layered plan, us per task (best / median of 15)")
    for name in ("critical_path", "fifo", "cp + on_event", "waves"):
        for cap in (4, None):
            best, median = await overhead_us_per_task(2000, cap, runner=OVERHEAD[name])
            print(f"  {name:<15} K={cap_label(cap):<4}{best:>8.1f} /{median:>6.1f}")

    wall, peak_mib = await scale_figures(10_000)
    print(f"\n10,000-task layered plan at zero latency, K=inf: {wall:.3f} s wall, {peak_mib:.1f} MiB peak extra memory")
