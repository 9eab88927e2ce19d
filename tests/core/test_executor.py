"""The DAG executor, specified by example: readiness, the cap, priorities, failures, timeouts, cancellation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest

from subagent_mcp.contracts import Plan, SubagentResult, Subtask, Usage
from subagent_mcp.core.executor import Priority, execute
from subagent_mcp.core.run_state import ExecutorEvent, RunState, TaskFinished

pytestmark = pytest.mark.anyio


def make_plan(graph: Mapping[str, list[str]]) -> Plan:
    subtasks = [Subtask(id=i, role="worker", instructions=f"do {i}", depends_on=deps) for i, deps in graph.items()]
    return Plan(plan_id="p", task="test", subtasks=subtasks)


def succeeded(task_id: str, **extra: object) -> SubagentResult:
    return SubagentResult.model_validate({"task_id": task_id, "role": "worker", "status": "succeeded", **extra})


@dataclass
class Script:
    """A ``run_task`` double: records what ran and when, and can hold, fail or raise per task."""

    holds: dict[str, anyio.Event] = field(default_factory=dict[str, anyio.Event])
    fail: set[str] = field(default_factory=set[str])
    raises: dict[str, Exception] = field(default_factory=dict[str, Exception])
    started: list[str] = field(default_factory=list[str])
    finished: list[str] = field(default_factory=list[str])
    cancelled: list[str] = field(default_factory=list[str])
    finished_before_start: dict[str, set[str]] = field(default_factory=dict[str, set[str]])
    deps_seen: dict[str, dict[str, SubagentResult]] = field(default_factory=dict[str, dict[str, SubagentResult]])
    in_flight: int = 0
    max_in_flight: int = 0
    _started: dict[str, anyio.Event] = field(default_factory=dict[str, anyio.Event])
    _ended: dict[str, anyio.Event] = field(default_factory=dict[str, anyio.Event])

    def started_event(self, task_id: str) -> anyio.Event:
        return self._started.setdefault(task_id, anyio.Event())

    def ended_event(self, task_id: str) -> anyio.Event:
        return self._ended.setdefault(task_id, anyio.Event())

    async def __call__(self, subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
        task_id = subtask.id
        self.started.append(task_id)
        self.finished_before_start[task_id] = set(self.finished)
        self.deps_seen[task_id] = dict(deps)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.started_event(task_id).set()
        try:
            await anyio.lowlevel.checkpoint()  # let siblings interleave, so the cap is really exercised
            if task_id in self.holds:
                await self.holds[task_id].wait()
            if task_id in self.raises:
                raise self.raises[task_id]
            if task_id in self.fail:
                return SubagentResult(task_id=task_id, role=subtask.role, status="failed", error="scripted failure")
            return succeeded(task_id, output={"from": task_id})
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(task_id)
            raise
        finally:
            self.in_flight -= 1
            self.finished.append(task_id)
            self.ended_event(task_id).set()


async def test_a_task_starts_only_after_all_its_dependencies_succeeded() -> None:
    plan = make_plan({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    script = Script(holds={"b": anyio.Event()})
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(execute, plan, script)
            await script.started_event("b").wait()
            await script.ended_event("c").wait()
            assert "d" not in script.started  # c is done, but b is still in flight
            script.holds["b"].set()
    assert script.started[-1] == "d"
    assert script.finished_before_start["d"] >= {"b", "c"}
    assert {k: r.status for k, r in script.deps_seen["d"].items()} == {"b": "succeeded", "c": "succeeded"}


async def test_every_task_runs_exactly_once() -> None:
    plan = make_plan({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["a", "d"], "f": []})
    script = Script()
    with anyio.fail_after(5):
        state = await execute(plan, script)
    assert sorted(script.started) == ["a", "b", "c", "d", "e", "f"]
    assert state.status == "succeeded"


async def test_in_flight_tasks_never_exceed_max_concurrency() -> None:
    plan = make_plan({f"t{i}": [] for i in range(12)})
    script = Script()
    with anyio.fail_after(5):
        state = await execute(plan, script, max_concurrency=3)
    assert script.max_in_flight == 3
    assert len(state.results) == 12


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ("critical_path", ["head", "mid", "solo", "tail"]),  # longest remaining path first, ties in plan order
        ("fifo", ["solo", "head", "mid", "tail"]),  # in the order tasks became ready
    ],
)
async def test_with_one_slot_the_priority_decides_which_ready_task_goes_first(
    priority: Priority, expected: list[str]
) -> None:
    plan = make_plan({"solo": [], "head": [], "mid": ["head"], "tail": ["mid"]})
    script = Script()
    with anyio.fail_after(5):
        await execute(plan, script, max_concurrency=1, priority=priority)
    assert script.started == expected


async def test_weights_rank_ready_tasks_by_the_heaviest_remaining_path_not_by_its_task_count() -> None:
    plan = make_plan({"solo": [], "head": [], "mid": ["head"], "tail": ["mid"]})
    script = Script()
    weights = {"solo": 10.0, "head": 1.0, "mid": 1.0, "tail": 1.0}  # one long call outweighs a chain of three
    with anyio.fail_after(5):
        await execute(plan, script, max_concurrency=1, weights=weights)
    assert script.started == ["solo", "head", "mid", "tail"]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": 1.0}, "missing: b"),
        ({"a": 1.0, "b": 1.0, "ghost": 1.0}, "unknown subtask ids: ghost"),
        ({"a": 0.0, "b": float("nan")}, "positive and finite: a=0.0, b=nan"),
    ],
)
async def test_weights_must_cover_the_plan_with_positive_durations(weights: dict[str, float], message: str) -> None:
    script = Script()
    with pytest.raises(ValueError, match=message):
        await execute(make_plan({"a": [], "b": []}), script, weights=weights)
    assert script.started == []


async def test_a_failure_skips_its_transitive_dependents_and_independent_branches_finish() -> None:
    plan = make_plan({"fetch": [], "parse": ["fetch"], "report": ["parse"], "other": [], "after_other": ["other"]})
    script = Script(fail={"fetch"})
    with anyio.fail_after(5):
        state = await execute(plan, script)
    statuses = {k: r.status for k, r in state.results.items()}
    assert statuses == {
        "fetch": "failed",
        "parse": "skipped",
        "report": "skipped",
        "other": "succeeded",
        "after_other": "succeeded",
    }
    assert state.results["parse"].error == "depends on 'fetch', which failed"
    assert state.results["report"].error == "depends on 'fetch', which failed"
    assert "parse" not in script.started
    assert "report" not in script.started
    assert state.status == "partial"


async def test_an_exception_in_run_task_becomes_a_failed_result_and_siblings_are_unaffected() -> None:
    plan = make_plan({"boom": [], "sibling": [], "needs_boom": ["boom"]})
    script = Script(raises={"boom": RuntimeError("kaput")})
    script.holds["sibling"] = script.ended_event("boom")  # sibling is mid-flight when boom raises
    with anyio.fail_after(5):
        state = await execute(plan, script)
    assert state.results["boom"].status == "failed"
    assert state.results["boom"].error == "raised RuntimeError: kaput"
    assert state.results["sibling"].status == "succeeded"
    assert script.cancelled == []
    assert state.results["needs_boom"].status == "skipped"


async def test_the_task_timeout_fails_a_hung_call_and_the_rest_of_the_run_goes_on() -> None:
    plan = make_plan({"hung": [], "after_hung": ["hung"], "fine": []})
    script = Script(holds={"hung": anyio.Event()})  # never set
    with anyio.fail_after(5):
        state = await execute(plan, script, task_timeout_s=0.01)
    assert state.results["hung"].status == "failed"
    assert state.results["hung"].error == "timed out after 0.01 s"
    assert script.cancelled == ["hung"]  # the call was cancelled, not abandoned
    assert state.results["after_hung"].status == "skipped"
    assert state.results["fine"].status == "succeeded"


async def test_the_run_timeout_fails_the_tasks_in_flight_and_skips_those_not_started_naming_timeout_s() -> None:
    plan = make_plan({"quick": [], "hung": [], "after_hung": ["hung"]})
    script = Script(holds={"hung": anyio.Event()})  # never set
    events: list[ExecutorEvent] = []
    with anyio.fail_after(5):
        state = await execute(plan, script, run_timeout_s=0.05, on_event=events.append)
    assert state.results["quick"].status == "succeeded"
    assert (state.results["hung"].status, state.results["hung"].error) == (
        "failed", "timed out: the run's timeout_s (0.05 s) ran out"
    )  # fmt: skip
    assert (state.results["after_hung"].status, state.results["after_hung"].error) == (
        "skipped", "not started: the run's timeout_s (0.05 s) ran out"
    )  # fmt: skip
    assert state.results["hung"].started_at_s is not None
    assert state.results["after_hung"].started_at_s is None
    assert script.cancelled == ["hung"]
    assert (state.status, state.interrupted) == ("partial", "timeout")  # timed out, not cancelled by anyone
    assert events[-1].kind == "run_finished"
    assert events[-1].status == "partial"


async def test_a_run_that_finishes_within_its_timeout_is_not_marked_interrupted() -> None:
    with anyio.fail_after(5):
        state = await execute(make_plan({"a": [], "b": ["a"]}), Script(), run_timeout_s=4.0, task_timeout_s=4.0)
    assert (state.status, state.interrupted) == ("succeeded", None)


async def test_cancelling_the_caller_cancels_in_flight_calls_and_marks_unfinished_tasks_cancelled() -> None:
    plan = make_plan({"quick": [], "a": [], "b": [], "after_a": ["a"]})
    script = Script(holds={"a": anyio.Event(), "b": anyio.Event()})  # never set
    state = RunState()
    propagated: list[bool] = []

    async def host() -> None:
        try:
            await execute(plan, script, state=state, on_event=lambda _: None)
        except anyio.get_cancelled_exc_class():
            propagated.append(True)
            raise

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(host)
            for task_id in ("a", "b", "quick"):
                await script.started_event(task_id).wait()
            await script.ended_event("quick").wait()
            tg.cancel_scope.cancel()
    assert propagated == [True]
    assert sorted(script.cancelled) == ["a", "b"]  # every held call observed its cancellation
    assert script.in_flight == 0
    assert state.running == {}
    assert {k: r.status for k, r in state.results.items()} == {
        "quick": "succeeded",
        "a": "cancelled",
        "b": "cancelled",
        "after_a": "cancelled",
    }
    assert state.results["a"].error == "run cancelled"
    assert (state.status, state.interrupted) == ("cancelled", "cancelled")


class Unprintable(RuntimeError):
    """An error whose message cannot be read, so it escapes the per-task handling that describes it (a bug)."""

    def __str__(self) -> str:
        raise AssertionError("a bug while describing an error")


async def test_an_error_escaping_the_run_fails_what_was_in_flight_skips_the_rest_and_propagates() -> None:
    plan = make_plan({"quick": [], "held": [], "after_held": ["held"], "bug": ["quick"]})
    script = Script(holds={"held": anyio.Event()}, raises={"bug": Unprintable()})  # held is never set
    state = RunState()
    with anyio.fail_after(5), pytest.RaisesGroup(AssertionError, flatten_subgroups=True):
        await execute(plan, script, state=state, on_event=lambda _: None)
    assert script.cancelled == ["held"]
    assert {k: (r.status, r.error) for k, r in state.results.items()} == {
        "quick": ("succeeded", None),
        "held": ("failed", "an internal error stopped the run (AssertionError)"),
        "bug": ("failed", "an internal error stopped the run (AssertionError)"),
        "after_held": ("skipped", "not started: an internal error stopped the run (AssertionError)"),
    }
    assert (state.status, state.interrupted) == ("failed", "error")  # nobody cancelled it


async def test_seeded_succeeded_results_are_not_run_again_and_satisfy_dependents() -> None:
    plan = make_plan({"a": [], "b": [], "c": ["a", "b"]})
    seed_a = succeeded("a", output={"cached": True})
    seed_b = SubagentResult(task_id="b", role="worker", status="failed", error="earlier failure")
    script = Script()
    with anyio.fail_after(5):
        state = await execute(plan, script, completed={"a": seed_a, "b": seed_b})
    assert script.started == ["b", "c"]  # a failed seed is run again
    assert script.deps_seen["c"]["a"] == seed_a
    assert state.results["a"] == seed_a
    assert state.status == "succeeded"


async def test_seeds_for_unknown_tasks_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown subtask ids: ghost"):
        await execute(make_plan({"a": []}), Script(), completed={"ghost": succeeded("ghost")})


async def test_an_invalid_plan_is_rejected_before_anything_runs() -> None:
    cyclic = Plan.model_construct(
        plan_id="p",
        task="t",
        subtasks=[
            Subtask(id="a", role="worker", instructions="x", depends_on=["b"]),
            Subtask(id="b", role="worker", instructions="x", depends_on=["a"]),
        ],
    )
    script = Script()
    with pytest.raises(ValueError, match="dependency cycle"):
        await execute(cyclic, script)
    assert script.started == []


@pytest.mark.parametrize(
    ("max_concurrency", "task_timeout_s", "run_timeout_s"),
    [(0, None, None), (None, 0.0, None), (None, None, -1.0)],
)
async def test_out_of_range_limits_are_rejected(
    max_concurrency: int | None, task_timeout_s: float | None, run_timeout_s: float | None
) -> None:
    with pytest.raises(ValueError, match="must be"):
        await execute(
            make_plan({"a": []}),
            Script(),
            max_concurrency=max_concurrency,
            task_timeout_s=task_timeout_s,
            run_timeout_s=run_timeout_s,
        )


async def test_results_carry_offsets_from_the_run_start_and_keep_what_run_task_reported() -> None:
    now = [100.0]

    async def run_task(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
        now[0] += {"a": 2.0, "b": 3.0}[subtask.id]
        return succeeded(subtask.id, usage=Usage(input_tokens=10), cost_usd=0.5, attempts=2)

    with anyio.fail_after(5):
        state = await execute(make_plan({"a": [], "b": ["a"]}), run_task, clock=lambda: now[0])
    a, b = state.results["a"], state.results["b"]
    assert (a.started_at_s, a.finished_at_s, a.duration_s) == (0.0, 2.0, 2.0)
    assert (b.started_at_s, b.finished_at_s, b.duration_s) == (2.0, 5.0, 3.0)
    assert (b.usage.input_tokens, b.cost_usd, b.attempts) == (10, 0.5, 2)
    assert state.makespan_s == 5.0


@pytest.mark.parametrize(
    ("failing", "expected"),
    [(set[str](), "succeeded"), ({"a"}, "partial"), ({"a", "b"}, "failed")],
)
async def test_the_run_status_summarises_the_task_statuses(failing: set[str], expected: str) -> None:
    with anyio.fail_after(5):
        state = await execute(make_plan({"a": [], "b": []}), Script(fail=failing))
    assert state.status == expected


async def test_events_report_each_start_and_finish_in_order_with_counts() -> None:
    events: list[ExecutorEvent] = []
    plan = make_plan({"a": [], "b": ["a"], "c": ["b"]})
    with anyio.fail_after(5):
        await execute(plan, Script(fail={"b"}), on_event=events.append)
    trace = [
        (e.kind, e.task_id if e.kind == "task_started" else e.result.task_id if e.kind == "task_finished" else "")
        for e in events
    ]
    assert trace == [
        ("task_started", "a"),
        ("task_finished", "a"),
        ("task_started", "b"),
        ("task_finished", "b"),
        ("task_finished", "c"),
        ("run_finished", ""),
    ]
    assert str(events[0].counts) == "0/3 done, 1 running"
    assert str(events[-1].counts) == "3/3 done, 1 failed, 1 skipped"


async def test_an_async_on_event_is_awaited() -> None:
    seen: list[str] = []

    async def on_event(event: ExecutorEvent) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(event.kind)

    with anyio.fail_after(5):
        await execute(make_plan({"a": []}), Script(), on_event=on_event)
    assert seen == ["task_started", "task_finished", "run_finished"]


async def test_an_on_event_that_raises_is_logged_and_the_run_completes(caplog: pytest.LogCaptureFixture) -> None:
    def on_event(event: ExecutorEvent) -> None:
        if isinstance(event, TaskFinished):
            raise RuntimeError("renderer broke")

    with caplog.at_level(logging.ERROR, logger="subagent_mcp.core.executor"), anyio.fail_after(5):
        state = await execute(make_plan({"a": [], "b": ["a"]}), Script(), on_event=on_event)
    assert state.status == "succeeded"
    assert "on_event raised on a task_finished event" in caplog.text
