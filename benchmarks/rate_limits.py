"""Adaptive against fixed concurrency, against a fake Messages API that admits only a few requests at once.

``Service.execute_plan`` runs a fan-out through the whole stack (the real ``AnthropicBackend``,
SQLite in memory) against ``serve_fake_anthropic(rate_limit_above=N)``, which answers 429 with a
short ``retry-after-ms`` to any request beyond N in flight. Both modes run in this one process on
the same plan: ``adaptive_concurrency`` on (the AIMD gate) and off (a fixed cap at max_concurrency).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

import anyio
from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import Plan, Subtask
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic

TASKS = 48
CAP = 16
ADMITTED = 4
LATENCY_S = 0.1
RETRY_AFTER_MS = 20.0
REPEATS = 3


@dataclass(frozen=True)
class Figures:
    """One run: subtasks succeeded, 429s the fake sent, and the executor's makespan."""

    succeeded: int
    rate_limited: int
    makespan_s: float


def fan_out(n: int) -> Plan:
    subtasks = [Subtask(id=f"t{i}", role="researcher", instructions=f"look at option {i}") for i in range(n)]
    return Plan(plan_id=f"bench-rate-{n}", task="Survey the options", subtasks=subtasks)


def answer_after_latency(request: FakeRequest) -> FakeReply:
    return json_reply(sample_for_schema(request.schema or {})).after(LATENCY_S)


async def one_run(plan: Plan, adaptive: bool) -> Figures:
    """``plan`` at ``CAP`` against a fake admitting ``ADMITTED``, after an untimed warm-up call on the same service."""
    async with serve_fake_anthropic(
        answer_after_latency, rate_limit_above=ADMITTED, rate_limit_retry_after_ms=RETRY_AFTER_MS
    ) as fake:
        settings = Settings(
            anthropic_api_key=SecretStr("bench"),
            anthropic_base_url=fake.base_url,
            db_path=":memory:",
            max_subtasks=len(plan.subtasks),
            max_concurrency=CAP,
            max_run_cost_usd=None,
            adaptive_concurrency=adaptive,
        )
        async with Service.open(settings) as service:
            await service.execute_plan(fan_out(1), max_concurrency=1)  # the SDK client and imports, untimed
            before = len(fake.rate_limited)
            report = await service.execute_plan(plan, max_concurrency=CAP)
        succeeded = sum(r.status == "succeeded" for r in report.results)
        return Figures(succeeded, len(fake.rate_limited) - before, report.makespan_s)


def _median(runs: list[Figures]) -> Figures:
    return Figures(
        round(statistics.median(r.succeeded for r in runs)),
        round(statistics.median(r.rate_limited for r in runs)),
        statistics.median(r.makespan_s for r in runs),
    )


async def run_all() -> None:
    """Print both modes' figures and their ratios, medians of ``REPEATS`` runs each, modes interleaved."""
    started = time.perf_counter()
    plan = fan_out(TASKS)
    runs: dict[bool, list[Figures]] = {True: [], False: []}
    for _ in range(REPEATS):
        for adaptive in (True, False):
            runs[adaptive].append(await one_run(plan, adaptive))
    adaptive, fixed = _median(runs[True]), _median(runs[False])
    ideal = TASKS / ADMITTED * LATENCY_S
    print(
        f"rate limits: {TASKS}-task fan-out, max_concurrency {CAP}, the fake admits {ADMITTED} at once "
        f"(429 beyond, retry-after-ms {RETRY_AFTER_MS:g}),\nreplies after {LATENCY_S:g} s; median of {REPEATS} runs "
        f"each; ideal makespan {TASKS} / {ADMITTED} x {LATENCY_S:g} s = {ideal:.2f} s"
    )
    head = f"{'':<28}{'adaptive':>10}{'fixed':>10}{'adaptive / fixed':>18}"
    print(head + "\n" + "-" * len(head))
    rows = [
        ("subtasks succeeded", adaptive.succeeded, fixed.succeeded, "d"),
        ("429s per subtask", adaptive.rate_limited / TASKS, fixed.rate_limited / TASKS, ".2f"),
        ("makespan s", adaptive.makespan_s, fixed.makespan_s, ".2f"),
        ("makespan / ideal", adaptive.makespan_s / ideal, fixed.makespan_s / ideal, ".2f"),
    ]
    for name, a, f, fmt in rows:
        ratio = f"{a / f:.2f}" if f else "-"
        print(f"{name:<28}{a:>10{fmt}}{f:>10{fmt}}{ratio:>18}")
    every = ", ".join(
        f"{'adaptive' if mode else 'fixed'} {[(r.succeeded, r.rate_limited, round(r.makespan_s, 2)) for r in rs]}"
        for mode, rs in runs.items()
    )
    print(f"each run (succeeded, 429s, makespan s): {every}")
    print(f"(the rate-limit figures took {time.perf_counter() - started:.0f} s)")


def main() -> None:
    logging.disable(logging.WARNING)  # one retry line per 429 would drown the table
    anyio.run(run_all)


if __name__ == "__main__":
    main()
