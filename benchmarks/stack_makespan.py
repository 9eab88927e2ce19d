"""Makespan through the whole stack: ``Service.execute_plan`` against the fake API, beside the bare executor.

Twice per workload and cap: with the fake in this process (its CPU competes with the server's on one
event loop) and with the fake in a process of its own (``peer.py``), as the real API is remote.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from subagent_mcp.core.estimate import expected_durations
from subagent_mcp.core.executor import execute
from subagent_mcp.planning import estimate_plan
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.service import Service
from subagent_mcp.testing import serve_fake_anthropic

from . import runners
from .dags import Workload, cap_label
from .peer import remote_fake
from .service import RealisticReplies, ServiceWorkload, bench_settings, checked, workloads


@dataclass(frozen=True)
class StackRow:
    """One workload at one cap: the bare executor's and the whole stack's makespans, in seconds."""

    workload: str
    tasks: int
    cap: int | None
    lower_bound_s: float
    executor_s: float
    together_s: float
    """The executor's makespan inside ``execute_plan``, the fake in this process."""
    apart_s: float
    """The same with the fake in its own process."""
    apart_wall_s: float
    """Wall time of that ``execute_plan``: plus checking and saving the plan, creating and closing the run."""


async def _executor_s(w: Workload, cap: int | None, weights: dict[str, float]) -> float:
    """The bare executor on the same latencies, with the priority the service uses (the plan's estimate)."""
    started = time.perf_counter()
    await execute(w.plan, runners.sleeping(w.latency), max_concurrency=cap, weights=weights)
    return time.perf_counter() - started


@asynccontextmanager
async def _local_fake(sw: ServiceWorkload) -> AsyncGenerator[str]:
    async with serve_fake_anthropic(RealisticReplies(sw.plan, sw.workload.latency, sw.output_tokens)) as fake:
        yield fake.base_url


async def _stack(
    fake: AbstractAsyncContextManager[str], sw: ServiceWorkload, caps: Sequence[int | None], db_path: str
) -> list[tuple[float, float]]:
    """(makespan, wall) of ``execute_plan`` at each cap against one fake."""
    out: list[tuple[float, float]] = []
    async with fake as base_url, Service.open(bench_settings(base_url, db_path)) as service:
        for cap in caps:
            started = time.perf_counter()
            report = await service.execute_plan(sw.plan, max_concurrency=cap or sw.size)
            wall = time.perf_counter() - started
            checked(report, f"{sw.name} K={cap_label(cap)}")
            out.append((report.makespan_s, wall))
    return out


async def stack_rows(
    index: int, sw: ServiceWorkload, caps: Sequence[int | None], folder: Path, median_s: float
) -> list[StackRow]:
    w = sw.workload
    weights = expected_durations(
        estimate_plan(sw.plan, bench_settings("http://127.0.0.1:9", ":memory:"), BUILTIN_ROLES)
    )
    executor = [await _executor_s(w, cap, weights) for cap in caps]
    together = await _stack(_local_fake(sw), sw, caps, str(folder / f"{sw.name}-together.db"))
    apart = await _stack(remote_fake(index, median_s), sw, caps, str(folder / f"{sw.name}-apart.db"))
    return [
        StackRow(w.name, w.size, cap, w.lower_bound_s(cap), e, t[0], a[0], a[1])
        for cap, e, t, a in zip(caps, executor, together, apart, strict=True)
    ]


def render_stack(rows: list[StackRow]) -> str:
    head = (
        f"{'workload':<20}{'tasks':>6}{'K':>5}{'LB s':>7}{'executor':>10}{'stack, fake here':>18}"
        f"{'stack, fake apart':>19}{'apart wall - executor s':>25}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lb = r.lower_bound_s
        lines.append(
            f"{r.workload:<20}{r.tasks:>6}{cap_label(r.cap):>5}{lb:>7.2f}{r.executor_s / lb:>10.3f}"
            f"{r.together_s / lb:>18.3f}{r.apart_s / lb:>19.3f}{r.apart_wall_s - r.executor_s:>+25.3f}"
        )
    return "\n".join(lines)


async def run_all(median_s: float, folder: Path) -> None:
    """Print the makespan table; SQLite files go under ``folder``."""
    started = time.perf_counter()
    print(
        "through the whole stack: Service.execute_plan -> AnthropicBackend -> fake Messages API on 127.0.0.1, "
        "SQLite file\n"
        f"makespan / lower bound; median task {median_s:g} s (slept by the fake), sigma 0.5; executor = the bare "
        "executor with a sleeping run_task;\nfake here = in this process and event loop; fake apart = in a "
        "process of its own, as the real API is"
    )
    rows: list[StackRow] = []
    for index, sw in enumerate(workloads(median_s)):
        rows += await stack_rows(index, sw, [4, None], folder, median_s)
    print(render_stack(rows))
    print(f"(the makespan figures took {time.perf_counter() - started:.0f} s)")
