"""Seeded workloads: DAG families with lognormal per-task latencies and their makespan lower bounds."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from subagent_mcp.contracts import Plan, Subtask
from subagent_mcp.core.graph import critical_path_length

MEDIAN_S = 0.2
SIGMA = 0.5
ESTIMATE_SIGMA = 0.3
"""Error of the latency estimates handed to the executor: true latency x lognormal(0, 0.3), about +-35%."""


@dataclass(frozen=True)
class Workload:
    """A plan plus how long each of its tasks takes (seconds)."""

    name: str
    plan: Plan
    latency: dict[str, float]

    @property
    def size(self) -> int:
        return len(self.plan.subtasks)

    @property
    def total_work_s(self) -> float:
        return sum(self.latency.values())

    @property
    def critical_path_s(self) -> float:
        return critical_path_length(self.plan.graph(), self.latency)

    def estimates(self, sigma: float = ESTIMATE_SIGMA) -> dict[str, float]:
        """Seeded noisy guesses of each latency (the executor's ``weights``); the same on every call."""
        rng = random.Random(f"{self.name}:{sum(self.latency.values())!r}:{sigma!r}")
        return {t: latency * rng.lognormvariate(0.0, sigma) for t, latency in self.latency.items()}

    def lower_bound_s(self, cap: int | None, durations: Mapping[str, float] | None = None) -> float:
        """No schedule beats the heaviest path, nor total work spread evenly over ``cap`` slots.

        By the scripted latencies, or by ``durations`` (what each task really took in one run).
        """
        took = self.latency if durations is None else durations
        path = critical_path_length(self.plan.graph(), took)
        return max(path, 0.0 if cap is None else sum(took.values()) / cap)


def cap_label(cap: int | None) -> str:
    """A concurrency cap as the tables print it."""
    return "inf" if cap is None else str(cap)


def safe_id(name: str) -> str:
    """``name`` as a plan id: letters, digits, '-', '_' and '.' only (``a+b`` becomes ``a-b``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def make_plan(name: str, graph: dict[str, list[str]]) -> Plan:
    subtasks = [Subtask(id=t, role="worker", instructions=f"do {t}", depends_on=d) for t, d in graph.items()]
    return Plan(plan_id=safe_id(name), task=f"benchmark {name}", subtasks=subtasks)


def lognormal(ids: list[str], rng: random.Random, median_s: float = MEDIAN_S, sigma: float = SIGMA) -> dict[str, float]:
    return {t: rng.lognormvariate(math.log(median_s), sigma) for t in ids}


def layered(n: int, seed: int, median_s: float = MEDIAN_S) -> Workload:
    """About sqrt(n) layers; each task needs one task of the layer before and up to two from any earlier layer."""
    rng = random.Random(seed)
    depth = max(2, round(math.sqrt(n)))
    layer_of = sorted(rng.randrange(depth) for _ in range(n))
    layers: list[list[str]] = [[] for _ in range(depth)]
    graph: dict[str, list[str]] = {}
    for i, layer in enumerate(layer_of):
        task_id = f"t{i}"
        deps: set[str] = set()
        before = next((layers[j] for j in range(layer - 1, -1, -1) if layers[j]), None)
        if before:
            deps.add(rng.choice(before))
            earlier = [t for j in range(layer) for t in layers[j]] if n <= 1000 else before
            deps.update(rng.sample(earlier, k=min(len(earlier), rng.randrange(3))))
        graph[task_id] = sorted(deps)
        layers[layer].append(task_id)
    name = f"layered-{n}"
    return Workload(name, make_plan(name, graph), lognormal(list(graph), rng, median_s))


def fan_out(n: int, seed: int, median_s: float = MEDIAN_S) -> Workload:
    """``n`` independent tasks."""
    graph: dict[str, list[str]] = {f"t{i}": [] for i in range(n)}
    name = f"fan-out-{n}"
    return Workload(name, make_plan(name, graph), lognormal(list(graph), random.Random(seed), median_s))


def chain_with_branches(length: int, seed: int, median_s: float = MEDIAN_S) -> Workload:
    """A main chain whose every link also feeds a side branch of one to three tasks."""
    rng = random.Random(seed)
    graph: dict[str, list[str]] = {}
    for i in range(length):  # side branches first in plan order, so FIFO and plan order favour them
        for j in range(rng.randint(1, 3)):
            graph[f"side{i}-{j}"] = [f"main{i}" if j == 0 else f"side{i}-{j - 1}"]
    for i in range(length):
        graph[f"main{i}"] = [f"main{i - 1}"] if i else []
    name = f"chain-{length}+branches"
    return Workload(name, make_plan(name, graph), lognormal(list(graph), rng, median_s))


def uniform(workload: Workload, latency_s: float) -> Workload:
    """The same plan with every task taking ``latency_s``."""
    return Workload(workload.name, workload.plan, dict.fromkeys(workload.latency, latency_s))
