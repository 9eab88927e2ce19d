"""Properties of the executor over random DAGs, random failures and random concurrency caps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subagent_mcp.contracts import Plan, SubagentResult, Subtask
from subagent_mcp.core.executor import Priority, execute
from subagent_mcp.core.graph import descendants, downstream_lengths
from subagent_mcp.core.run_state import RunState

pytestmark = pytest.mark.anyio

FAST = settings(max_examples=75, deadline=None)
PRIORITIES: tuple[Priority, ...] = ("critical_path", "fifo")


@dataclass(frozen=True)
class Scenario:
    """A random plan (edges only from lower to higher index, so it is acyclic) and how to run it."""

    graph: dict[str, list[str]]
    failing: dict[str, str]  # task id -> "return" (a failed result) or "raise"
    yields: dict[str, int]  # checkpoints each call awaits, to vary interleavings
    cap: int | None
    priority: Priority
    weights: dict[str, float] | None = None  # expected durations for the critical-path priority

    def plan(self) -> Plan:
        subtasks = [Subtask(id=t, role="worker", instructions=f"do {t}", depends_on=d) for t, d in self.graph.items()]
        return Plan(plan_id="p", task="property", subtasks=subtasks)


@st.composite
def scenarios(draw: st.DrawFn, max_tasks: int = 20) -> Scenario:
    n = draw(st.integers(1, max_tasks))
    ids = [f"t{i}" for i in range(n)]
    graph = {
        ids[i]: [ids[j] for j in sorted(draw(st.sets(st.integers(0, i - 1), max_size=3)))] if i else []
        for i in range(n)
    }
    failing = draw(st.dictionaries(st.sampled_from(ids), st.sampled_from(["return", "raise"]), max_size=n))
    yields = {t: draw(st.integers(0, 2)) for t in ids}
    cap = draw(st.none() | st.integers(1, 4))
    priority = draw(st.sampled_from(PRIORITIES))
    weights = draw(st.none() | st.fixed_dictionaries({t: st.floats(0.1, 10.0) for t in ids}))
    return Scenario(graph, failing, yields, cap, priority, weights)


@dataclass
class Recorder:
    """A ``run_task`` that notes violations instead of asserting (an assert inside would become a failure)."""

    scenario: Scenario
    started: list[str] = field(default_factory=list[str])
    succeeded: set[str] = field(default_factory=set[str])
    violations: list[str] = field(default_factory=list[str])
    in_flight: int = 0
    max_in_flight: int = 0

    async def __call__(self, subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
        task_id = subtask.id
        if task_id in self.started:
            self.violations.append(f"{task_id} ran twice")
        unmet = [d for d in subtask.depends_on if d not in self.succeeded or deps[d].status != "succeeded"]
        if unmet:
            self.violations.append(f"{task_id} started before {unmet} succeeded")
        self.started.append(task_id)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.scenario.yields[task_id]):
                await anyio.lowlevel.checkpoint()
            how = self.scenario.failing.get(task_id)
            if how == "raise":
                raise RuntimeError(f"{task_id} broke")
            if how == "return":
                return SubagentResult(task_id=task_id, role=subtask.role, status="failed", error="scripted")
            self.succeeded.add(task_id)
            return SubagentResult(task_id=task_id, role=subtask.role, status="succeeded", output={})
        finally:
            self.in_flight -= 1


async def run(scenario: Scenario, completed: Mapping[str, SubagentResult] | None = None) -> tuple[RunState, Recorder]:
    recorder = Recorder(scenario)
    with anyio.fail_after(5):
        state = await execute(
            scenario.plan(),
            recorder,
            max_concurrency=scenario.cap,
            priority=scenario.priority,
            weights=scenario.weights,
            completed=completed,
        )
    return state, recorder


def expected_statuses(scenario: Scenario) -> dict[str, str]:
    """Walk the plan in index order: skipped if any dependency did not succeed, else as scripted."""
    status: dict[str, str] = {}
    for task_id, deps in scenario.graph.items():
        if any(status[d] != "succeeded" for d in deps):
            status[task_id] = "skipped"
        else:
            status[task_id] = "failed" if task_id in scenario.failing else "succeeded"
    return status


@FAST
@given(scenarios())
async def test_each_task_runs_at_most_once_and_only_after_all_its_dependencies_succeeded(scenario: Scenario) -> None:
    state, recorder = await run(scenario)
    assert recorder.violations == []
    assert all(n == 1 for n in Counter(recorder.started).values())
    assert set(recorder.started) == {t for t, r in state.results.items() if r.status != "skipped"}


@FAST
@given(scenarios())
async def test_the_skipped_tasks_are_exactly_the_descendants_of_failed_ones(scenario: Scenario) -> None:
    state, _ = await run(scenario)
    failed = {t for t, r in state.results.items() if r.status == "failed"}
    skipped = {t for t, r in state.results.items() if r.status == "skipped"}
    downstream = set[str]().union(*(descendants(scenario.graph, t) for t in failed))
    assert skipped == downstream - failed
    for task_id in skipped:
        error = state.results[task_id].error or ""
        upstream = error.removeprefix("depends on '").split("'")[0]
        assert upstream in failed
        assert task_id in descendants(scenario.graph, upstream)


@FAST
@given(scenarios())
async def test_the_concurrency_cap_always_holds(scenario: Scenario) -> None:
    _, recorder = await run(scenario)
    if scenario.cap is not None:
        assert recorder.max_in_flight <= scenario.cap


@FAST
@given(scenarios())
async def test_final_statuses_partition_the_tasks(scenario: Scenario) -> None:
    state, _ = await run(scenario)
    assert list(state.results) != []
    assert sorted(state.results) == sorted(scenario.graph)
    assert {t: r.status for t, r in state.results.items()} == expected_statuses(scenario)
    counts = state.counts()
    assert counts.succeeded + counts.failed + counts.skipped == counts.done == counts.total == len(scenario.graph)
    assert counts.running == counts.cancelled == 0


@FAST
@given(scenarios())
async def test_with_one_slot_critical_path_always_starts_a_ready_task_with_the_longest_remaining_path(
    scenario: Scenario,
) -> None:
    scenario = Scenario(scenario.graph, scenario.failing, scenario.yields, 1, "critical_path", scenario.weights)
    state, recorder = await run(scenario)
    length = downstream_lengths(scenario.graph, scenario.weights)  # in tasks, or in expected durations
    index = {t: i for i, t in enumerate(scenario.graph)}
    started: set[str] = set()
    done: set[str] = set()
    for task_id in recorder.started:  # with one slot, every earlier task has finished when this one starts
        ready = [t for t, deps in scenario.graph.items() if t not in started and set(deps) <= done]
        assert task_id == min(ready, key=lambda t: (-length[t], index[t]))
        started.add(task_id)
        if state.results[task_id].status == "succeeded":
            done.add(task_id)


@FAST
@given(scenarios(), st.lists(st.booleans(), min_size=20, max_size=20))
async def test_resuming_with_earlier_successes_runs_only_the_rest(scenario: Scenario, keep: list[bool]) -> None:
    # All drawing happens before the test body: a draw inside an async test can leak StopTest into the event loop.
    seeds: dict[str, SubagentResult] = {}
    for (task_id, deps), wanted in zip(scenario.graph.items(), keep, strict=False):
        if wanted and all(d in seeds for d in deps):  # a resumable prefix: every seed's dependencies are seeded
            seeds[task_id] = SubagentResult(task_id=task_id, role="worker", status="succeeded", output={"seed": 1})
    state, recorder = await run(scenario, completed=seeds)
    assert not set(recorder.started) & set(seeds)
    assert all(state.results[t] == seed for t, seed in seeds.items())
    assert len(state.results) == len(scenario.graph)
