"""Through the whole stack against the fake Messages API: makespan, estimate against billing, per-task cost.

``Service.execute_plan`` runs with the real ``AnthropicBackend`` (no backend override): the settings
point at the fake on 127.0.0.1, so every subtask goes through the executor, the budget, the SDK over
HTTP, JSON-schema validation and a SQLite file. The fake answers each subtask after the same seeded
latency the sleeping benchmark uses, with a schema-valid object of a seeded lognormal size around its
role's ``expected_output_tokens``, and bills input as the prompt's text / 4 (the fake's rule) and output as that size.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import anyio
from pydantic import SecretStr

from subagent_mcp.backends.anthropic import AnthropicBackend
from subagent_mcp.backends.budgeted import reserved_prompt_tokens
from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import CompletionRequest, ModelMessage, Plan, PlanEstimate, RunReport, Subtask, Usage
from subagent_mcp.core.pricing import cost_usd
from subagent_mcp.planning import subtask_request
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic
from subagent_mcp.testing._billing import count_tokens

from . import dags
from .dags import Workload

OUTPUT_SIGMA = 0.5
"""Spread of reply lengths: lognormal around the role's ``expected_output_tokens``."""

Lengths = Literal["median", "mean"]
"""Whether ``expected_output_tokens`` is the median of the reply lengths drawn or their mean."""

CHARS_PER_BILLED_TOKEN = 4
"""The fake bills text at 4 characters a token (the estimator assumes 3.5, to err high)."""

ESTIMATE_PLANS = 5
"""Seeded plans per family for the estimate (billing runs at zero latency, so they are cheap)."""

OVERHEAD_TASKS = 200
OVERHEAD_REPEATS = 3

ROLE_NAMES = sorted(BUILTIN_ROLES)
WORDS = (
    *("the", "service", "runs", "each", "subtask", "with", "its", "role", "prompt", "and", "checks", "reply"),
    *("against", "schema", "before", "saving", "so", "that", "later", "can", "read", "what", "earlier", "one"),
    *("found", "about", "design", "costs", "open", "questions", "in", "plain", "words", "numbers", "where", "help"),
)


def words(n_chars: int, rng: random.Random) -> str:
    """Seeded prose of exactly ``n_chars`` characters (ASCII, no quotes, so JSON adds nothing)."""
    out: list[str] = []
    size = -1
    while size < n_chars:
        out.append(rng.choice(WORDS))
        size += len(out[-1]) + 1
    return " ".join(out)[:n_chars]


@dataclass(frozen=True)
class ServiceWorkload:
    """A sleeping-benchmark workload as a runnable plan: seeded roles and instructions, and reply sizes."""

    workload: Workload
    plan: Plan
    output_tokens: dict[str, int]
    """What the fake answers each subtask with, in billed tokens (before the request's max_tokens cap)."""
    lengths: Lengths

    @property
    def name(self) -> str:
        return self.workload.name

    @property
    def size(self) -> int:
        return self.workload.size


def service_workload(w: Workload, seed: int, lengths: Lengths = "median") -> ServiceWorkload:
    """``w``'s DAG with a seeded role per task, ~40 words of instructions each, and seeded reply sizes.

    Reply sizes are lognormal with the role's ``expected_output_tokens`` as their median, or as their
    mean (the median scaled by ``exp(-sigma**2 / 2)``); the draws are the same, only the scale differs.
    """
    scale = 1.0 if lengths == "median" else math.exp(-(OUTPUT_SIGMA**2) / 2)
    roles, sizes, text = (random.Random(f"{what}:{w.name}:{seed}") for what in ("roles", "sizes", "text"))
    subtasks: list[Subtask] = []
    output_tokens: dict[str, int] = {}
    for s in w.plan.subtasks:
        role = roles.choice(ROLE_NAMES)
        instructions = f"Work on part {s.id} of the benchmark task. " + words(240, text)
        subtasks.append(Subtask(id=s.id, role=role, instructions=instructions, depends_on=s.depends_on))
        median = BUILTIN_ROLES[role].expected_output_tokens * scale
        output_tokens[s.id] = max(1, round(sizes.lognormvariate(math.log(median), OUTPUT_SIGMA)))
    task = f"Benchmark {w.name}: " + words(400, text)
    plan = Plan(plan_id=dags.safe_id(f"bench-{w.name}-{seed}"), task=task, subtasks=subtasks)
    return ServiceWorkload(w, plan, output_tokens, lengths)


def task_id_of(request: FakeRequest) -> str:
    return request.subtask_id


def padded(obj: Any, n_chars: int, rng: random.Random) -> Any:
    """``obj`` with its first top-level string field lengthened so that its JSON is about ``n_chars`` long."""
    extra = n_chars - len(json.dumps(obj))
    if extra <= 1 or not isinstance(obj, dict):
        return obj
    out: dict[str, Any] = dict(obj)
    key = next((k for k, v in out.items() if isinstance(v, str)), None)
    if key is not None:
        out[key] = f"{out[key]} {words(extra - 1, rng)}"
    return out


@dataclass(frozen=True)
class Billed:
    """One answered request: the subtask, the model it asked for and the usage the fake billed."""

    task_id: str
    model: str
    usage: Usage
    reserved_input_tokens: int
    """The prompt as the run's budget reserved it for this call (``reserved_prompt_tokens``)."""
    max_tokens: int


@dataclass
class RealisticReplies:
    """The fake's handler: each subtask after its latency, with a padded schema-valid object, billed as sized."""

    plan: Plan
    latency: dict[str, float]
    output_tokens: dict[str, int]
    billed: list[Billed] = field(default_factory=list[Billed])

    def __call__(self, request: FakeRequest) -> FakeReply:
        task_id = task_id_of(request)
        max_tokens = int(request.body["max_tokens"])
        n = min(self.output_tokens[task_id], max_tokens)
        obj = padded(sample_for_schema(request.schema or {}), CHARS_PER_BILLED_TOKEN * n, random.Random(task_id))
        usage = Usage(input_tokens=count_tokens(request.body), output_tokens=n)  # the fake's own rule (no cache here)
        self.billed.append(Billed(task_id, request.model, usage, self._reserved_input(request, task_id), max_tokens))
        return json_reply(obj, usage=usage).after(self.latency[task_id])

    def _reserved_input(self, request: FakeRequest, task_id: str) -> int:
        """What ``BudgetedBackend`` reserved for this prompt, rebuilt from the body and the task's own schema."""
        subtask = self.plan.subtask(task_id)
        turns = [m for m in request.body["messages"] if isinstance(m.get("content"), str)]
        sent = CompletionRequest(
            model=request.model,
            system=request.system_text,
            messages=[ModelMessage(role=m["role"], content=m["content"]) for m in turns],
            output_schema=subtask.output_schema or BUILTIN_ROLES[subtask.role].output_schema,
        )
        return reserved_prompt_tokens(sent)


def bench_settings(base_url: str, db_path: str) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr("bench"),
        anthropic_base_url=base_url,
        db_path=db_path,
        max_run_cost_usd=None,
        max_subtasks=OVERHEAD_TASKS,
        max_concurrency=1024,  # the process-wide cap sits above every run's cap: the runs' own caps are measured
    )


def checked(report: RunReport, what: str) -> RunReport:
    if report.status != "succeeded":
        failed = [f"{r.task_id}: {r.status} {r.error}" for r in report.results if r.status != "succeeded"][:3]
        raise RuntimeError(f"{what}: the run ended {report.status}: {'; '.join(failed)}")
    return report


# --- estimate against billing ------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimateRow:
    """A plan's estimate (subtasks only, no synthesis) beside what the fake billed for one run of it."""

    workload: str
    tasks: int
    lengths: Lengths
    estimate: PlanEstimate
    billed: list[Billed]
    settings: Settings

    def cost(self, b: Billed) -> float:
        return cost_usd(b.usage, b.model, self.settings.prices)

    @property
    def input_estimated(self) -> int:
        return sum(t.input_tokens for t in self.estimate.tasks)

    @property
    def output_estimated(self) -> int:
        return sum(t.output_tokens for t in self.estimate.tasks)

    @property
    def cost_estimated(self) -> float:
        return sum(t.cost_usd for t in self.estimate.tasks)

    @property
    def worst_case(self) -> float:
        return sum(t.max_cost_usd for t in self.estimate.tasks)

    @property
    def input_billed(self) -> int:
        return sum(b.usage.input_tokens for b in self.billed)

    @property
    def output_billed(self) -> int:
        return sum(b.usage.output_tokens for b in self.billed)

    @property
    def cost_billed(self) -> float:
        return sum(self.cost(b) for b in self.billed)

    def per_task(self) -> tuple[list[float], list[float]]:
        """Per subtask: expected cost / billed cost, and worst-case cost / billed cost."""
        by_task = {b.task_id: self.cost(b) for b in self.billed}
        expected = [t.cost_usd / by_task[t.task_id] for t in self.estimate.tasks]
        worst = [t.max_cost_usd / by_task[t.task_id] for t in self.estimate.tasks]
        return expected, worst

    def reserved(self) -> list[float]:
        """Per call: what the budget reserved (the prompt as sent plus max_tokens, priced) / what it billed."""
        prices = self.settings.prices
        return [
            cost_usd(Usage(input_tokens=b.reserved_input_tokens, output_tokens=b.max_tokens), b.model, prices)
            / self.cost(b)
            for b in self.billed
        ]


async def billed_run(sw: ServiceWorkload, db_path: str) -> EstimateRow:
    """One run at zero latency (what is billed does not depend on timing), checked against the fake's log."""
    replies = RealisticReplies(sw.plan, dict.fromkeys(sw.output_tokens, 0.0), sw.output_tokens)
    async with serve_fake_anthropic(replies) as fake:
        settings = bench_settings(fake.base_url, db_path)
        async with Service.open(settings) as service:
            report = checked(await service.execute_plan(sw.plan, max_concurrency=sw.size), f"{sw.name} billing")
    billed = sum((b.usage for b in replies.billed), Usage())
    if fake.billed_usage != billed or report.usage != billed or len(replies.billed) != sw.size:
        raise RuntimeError(f"{sw.name}: handler {billed}, fake {fake.billed_usage}, report {report.usage} differ")
    assert report.estimate is not None
    return EstimateRow(sw.name, sw.size, sw.lengths, report.estimate, replies.billed, settings)


def render_estimates(rows: list[EstimateRow]) -> str:
    """One line per family and length model: its plans' totals, the spread over plans, the worst cases."""
    head = (
        f"{'workload':<20}{'lengths':>8}{'plans':>6}{'input':>7}{'output':>8}{'cost':>7}{'cost per plan':>15}"
        f"{'worst':>7}{'worst per task':>16}{'reserved per call':>19}"
    )
    lines = [head, "-" * len(head)]
    groups: dict[tuple[str, str], list[EstimateRow]] = {}
    for r in rows:
        groups.setdefault((r.workload, r.lengths), []).append(r)
    for (workload, lengths), group in groups.items():
        inputs = sum(r.input_estimated for r in group) / sum(r.input_billed for r in group)
        outputs = sum(r.output_estimated for r in group) / sum(r.output_billed for r in group)
        cost = sum(r.cost_estimated for r in group) / sum(r.cost_billed for r in group)
        per_plan = [r.cost_estimated / r.cost_billed for r in group]
        worst = min(r.worst_case / r.cost_billed for r in group)
        worst_task = min(min(r.per_task()[1]) for r in group)
        reserved = min(min(r.reserved()) for r in group)
        spread = f"{min(per_plan):.2f}-{max(per_plan):.2f}"
        lines.append(
            f"{workload:<20}{lengths:>8}{len(group):>6}{inputs:>7.2f}{outputs:>8.2f}{cost:>7.2f}{spread:>15}"
            f"{worst:>7.2f}{worst_task:>16.3f}{reserved:>19.3f}"
        )
    for lengths in ("median", "mean"):
        group = [r for r in rows if r.lengths == lengths]
        expected = [x for r in group for x in r.per_task()[0]]
        if len(expected) < 2:
            continue
        deciles = statistics.quantiles(expected, n=10)
        cost = sum(r.cost_estimated for r in group) / sum(r.cost_billed for r in group)
        lines.append(
            f"{lengths:>6}: all plans, est/billed cost {cost:.2f}; per subtask ({len(expected)}): "
            f"p10 {deciles[0]:.2f}, median {statistics.median(expected):.2f}, p90 {deciles[-1]:.2f}"
        )
    return "\n".join(lines)


# --- per-task cost at zero latency ------------------------------------------------------------------


async def _ms_per_task(run: Callable[[], Awaitable[None]], n: int, repeats: int) -> tuple[float, float]:
    """Milliseconds per task of ``run``, after one untimed warm-up: best and median of ``repeats``."""
    await run()
    times: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) / n * 1e3)
    return min(times), statistics.median(times)


async def stack_overhead(plan: Plan, db_path: str, cap: int, repeats: int) -> tuple[float, float]:
    """``execute_plan`` against a fake that answers at once with tiny default (schema-sampled) objects."""
    async with serve_fake_anthropic() as fake, Service.open(bench_settings(fake.base_url, db_path)) as service:

        async def run() -> None:
            checked(await service.execute_plan(plan, max_concurrency=cap), f"overhead {db_path} K={cap}")

        return await _ms_per_task(run, len(plan.subtasks), repeats)


async def backend_overhead(plan: Plan, cap: int, repeats: int) -> tuple[float, float]:
    """Only ``AnthropicBackend.complete`` on every subtask's request, ``cap`` at a time: HTTP, SDK and the fake."""
    async with serve_fake_anthropic() as fake:
        settings = bench_settings(fake.base_url, ":memory:")
        requests = [subtask_request(s, plan.task, None, settings, BUILTIN_ROLES) for s in plan.subtasks]
        limiter = anyio.CapacityLimiter(cap)
        async with AnthropicBackend(settings) as backend:

            async def one(request: CompletionRequest) -> None:
                async with limiter:
                    await backend.complete(request)

            async def run() -> None:
                async with anyio.create_task_group() as tg:
                    for request in requests:
                        tg.start_soon(one, request)

            return await _ms_per_task(run, len(plan.subtasks), repeats)


# --- entry point -------------------------------------------------------------------------------------


def workloads(median_s: float, lengths: Lengths = "median", offset: int = 0) -> list[ServiceWorkload]:
    """One workload of each family; ``offset`` 0 gives the sleeping benchmark's first of each, same seeds."""
    return [
        service_workload(dags.layered(30, seed=1 + offset, median_s=median_s), 1 + offset, lengths),
        service_workload(dags.layered(100, seed=3 + offset, median_s=median_s), 3 + offset, lengths),
        service_workload(dags.fan_out(48, seed=5 + offset, median_s=median_s), 5 + offset, lengths),
        service_workload(dags.chain_with_branches(12, seed=6 + offset, median_s=median_s), 6 + offset, lengths),
    ]


async def run_all(median_s: float, folder: Path) -> None:
    """Print every figure; SQLite files go under ``folder``."""
    started = time.perf_counter()
    print(
        f"\nestimate / billed (input billed as prompt text / 4), subtasks only, {ESTIMATE_PLANS} seeded plans "
        f"per family; reply lengths lognormal,\nsigma {OUTPUT_SIGMA}, with the role's expected_output_tokens as "
        "their median or their mean. input, output, cost: sums over the plans; cost per plan: range;\n"
        "worst: min over plans of max_cost_usd / billed; worst per task: min over subtasks of the task's "
        "max_cost_usd / its billed cost;\nreserved per call: min over calls of what the run's budget reserved "
        "(prompt as sent + max_tokens) / billed"
    )
    db = str(folder / "estimates.db")
    estimates = [
        await billed_run(sw, db)
        for lengths in get_args(Lengths)
        for k in range(ESTIMATE_PLANS)
        for sw in workloads(median_s, lengths, offset=100 * k)
    ]
    print(render_estimates(estimates))

    n = OVERHEAD_TASKS
    fan = service_workload(dags.fan_out(n, seed=0), seed=0).plan
    print(
        f"\nper-task cost through the stack at zero latency, {n}-task fan-out, tiny replies: "
        f"ms per task (best / median of {OVERHEAD_REPEATS})"
    )
    db = str(folder / "overhead.db")
    figures = {
        f"execute_plan, SQLite file, K={n}": await stack_overhead(fan, db, n, OVERHEAD_REPEATS),
        f"execute_plan, :memory:,    K={n}": await stack_overhead(fan, ":memory:", n, OVERHEAD_REPEATS),
        "execute_plan, SQLite file, K=8": await stack_overhead(fan, db, 8, OVERHEAD_REPEATS),
        f"AnthropicBackend only,     K={n}": await backend_overhead(fan, n, OVERHEAD_REPEATS),
        "AnthropicBackend only,     K=8": await backend_overhead(fan, 8, OVERHEAD_REPEATS),
    }
    for name, (best, median) in figures.items():
        print(f"  {name:<36}{best:>7.2f} /{median:>6.2f}")
    print(f"\n(the whole-stack figures took {time.perf_counter() - started:.0f} s)")


def main(median_s: float, sections: Sequence[Callable[[float, Path], Awaitable[None]]] = ()) -> None:
    """Run ``sections`` and then :func:`run_all`, with their SQLite files in one temporary folder."""

    async def everything(folder: Path) -> None:
        for section in sections:
            await section(median_s, folder)
        await run_all(median_s, folder)

    with tempfile.TemporaryDirectory(prefix="subagent-bench-") as folder:
        anyio.run(everything, Path(folder))
