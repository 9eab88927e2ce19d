"""The store's one interface, specified once and run on both adapters: a SQLite file and a PostgreSQL database.

Round-trips, usage of every attempt, listing, and ownership by lease: what several servers sharing one
database rely on (a run is its owner's while heartbeats renew its lease; past it, any server may resume it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from store_setup import OPTIONS
from subagent_mcp.contracts import Plan, RunReport, Spend, SubagentResult, Subtask, Synthesis, TaskStatus, Usage
from subagent_mcp.store import Store, StoreError, temporal_owner
from subagent_mcp.store.rows import this_machine

pytestmark = pytest.mark.anyio

LEASE_S = 100.0


@dataclass
class Clock:
    """A clock that moves one second per reading (ordering by time is deterministic), or jumps when told."""

    now: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def jump(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


Opener = Callable[..., AbstractAsyncContextManager[Store]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def opener(db_location: str, clock: Clock) -> Opener:
    """Opens a store on this test's database (each call: another server on the same database, one clock)."""

    def open_store(owner: str | None = None) -> AbstractAsyncContextManager[Store]:
        return Store.open(db_location, owner=owner, lease_s=LEASE_S, now=clock)

    return open_store


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[Store]:
    async with opener("server-a") as s:
        yield s


def make_plan(plan_id: str = "plan-1", task: str = "Write a report", ids: tuple[str, ...] = ("a", "b")) -> Plan:
    return Plan(
        plan_id=plan_id, task=task, subtasks=[Subtask(id=i, role="worker", instructions=f"do {i}") for i in ids]
    )


def result(task_id: str, status: TaskStatus = "succeeded", tokens: int = 0, cost: float = 0.0) -> SubagentResult:
    return SubagentResult(
        task_id=task_id,
        role="worker",
        status=status,
        output={"answer": task_id} if status == "succeeded" else None,
        usage=Usage(input_tokens=tokens, output_tokens=tokens // 2),
        cost_usd=cost,
        model="claude-haiku-5-5",
    )


async def started(store: Store, run_id: str = "run-1", plan: Plan | None = None) -> Plan:
    plan = plan or make_plan()
    await store.save_plan(plan)
    await store.create_run(run_id, plan.plan_id, OPTIONS)
    return plan


async def status_of(store: Store, run_id: str) -> str:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status


# --- plans and results -----------------------------------------------------------------------------


async def test_plan_round_trips_and_saving_it_again_is_a_no_op(store: Store) -> None:
    await store.save_plan(make_plan())
    await store.save_plan(make_plan())

    assert await store.get_plan("plan-1") == make_plan()
    assert await store.get_plan("nope") is None


async def test_a_different_plan_under_a_stored_id_is_refused(store: Store) -> None:
    await store.save_plan(make_plan())
    with pytest.raises(StoreError, match="give the changed plan a new plan_id"):
        await store.save_plan(make_plan(ids=("a", "b", "c")))
    assert await store.get_plan("plan-1") == make_plan()


async def test_a_run_needs_a_saved_plan(store: Store) -> None:
    with pytest.raises(StoreError, match="No plan 'plan-x' is stored"):
        await store.create_run("run-1", "plan-x", OPTIONS)


async def test_a_new_run_is_running_and_leased_to_the_server_that_created_it(store: Store, clock: Clock) -> None:
    await started(store)

    run = await store.get_run("run-1")
    assert run is not None
    assert (run.status, run.owner, run.pid, run.plan_id) == ("running", "server-a", os.getpid(), "plan-1")
    assert run.lease_live(clock.now)
    assert run.options == OPTIONS
    assert (run.report, run.finished_at, run.results, run.cancel_requested) == (None, None, {}, False)
    assert await store.get_run("run-x") is None


async def test_results_upsert_to_the_latest_per_task_and_survive_reopening(opener: Opener) -> None:
    async with opener() as s:
        await started(s)
        await s.save_result("run-1", result("a", "failed"))
        await s.save_result("run-1", result("b"))
        await s.save_result("run-1", result("a"))  # a re-run of a

    async with opener() as s:
        run = await s.get_run("run-1")
    assert run is not None
    assert list(run.results) == ["a", "b"]  # in the order first saved
    assert run.results["a"] == result("a")
    assert run.succeeded_ids() == {"a", "b"}


async def test_writing_to_an_unknown_run_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="No run 'run-x'"):
        await store.save_result("run-x", result("a"))
    with pytest.raises(StoreError, match="No run 'run-x'"):
        await store.finish_run("run-x", RunReport(run_id="run-x", plan_id="plan-1", status="failed", results=[]))


async def test_usage_totals_include_every_attempt_of_every_task(store: Store) -> None:
    await started(store)
    await store.save_result("run-1", result("a", "failed", tokens=100, cost=0.5))
    await store.save_result("run-1", result("a", tokens=40, cost=0.25))  # replaces the result, not its cost
    await store.save_result("run-1", result("b", tokens=10, cost=0.125), record_usage=False)
    await store.log_usage("run-1", "b", "claude-haiku-5-5", Usage(input_tokens=10, output_tokens=5), 0.125)
    await store.log_usage("run-1", "_synthesis", None, Usage(cache_read_tokens=7, cache_write_tokens=3), 1.0)

    run = await store.get_run("run-1")
    assert run is not None
    assert run.usage == Usage(input_tokens=150, output_tokens=75, cache_read_tokens=7, cache_write_tokens=3)
    assert run.cost_usd == 1.875
    assert run.results["a"].usage == Usage(input_tokens=40, output_tokens=20)


async def test_finishing_a_run_keeps_its_report_and_a_later_synthesis_concludes_it(store: Store) -> None:
    await started(store)
    report = RunReport(run_id="run-1", plan_id="plan-1", status="partial", results=[result("a"), result("b", "failed")])
    await store.finish_run("run-1", report)
    run = await store.get_run("run-1")
    assert run is not None
    assert (run.status, run.report, run.concluded) == ("partial", report, False)
    assert run.finished_at is not None

    answer = Synthesis(answer="done", complete=True, usage=Usage(output_tokens=4), cost_usd=0.5)
    await store.save_synthesis("run-1", answer, Spend(usage=answer.usage, cost_usd=0.5))
    run = await store.get_run("run-1")
    assert run is not None
    assert (run.concluded, run.synthesis, run.synthesis_spend.cost_usd) == (True, answer, 0.5)
    with pytest.raises(ValueError, match="report is for run 'run-1', not 'run-2'"):
        await store.finish_run("run-2", report)


async def test_planner_spend_without_a_plan_is_totalled(store: Store) -> None:
    await store.log_planning(None, None, "claude-opus-5-5", Spend(usage=Usage(input_tokens=9), cost_usd=0.5), "bad")
    await store.log_planning("plan-1", None, "claude-opus-5-5", Spend(usage=Usage(input_tokens=5), cost_usd=1.0))

    assert await store.failed_planning() == Spend(usage=Usage(input_tokens=9), cost_usd=0.5)


async def test_list_runs_is_newest_first_with_counts_and_cost(store: Store) -> None:
    assert await store.list_runs() == []
    await started(store, "run-1")
    long_task = "Compare   three\ndatabases " + "in depth " * 20
    await started(store, "run-2", make_plan("plan-2", long_task))
    await started(store, "run-3")
    await store.save_result("run-2", result("a", tokens=1, cost=0.5))
    await store.save_result("run-2", result("b", "failed", tokens=1, cost=0.25))
    await store.finish_run("run-2", RunReport(run_id="run-2", plan_id="plan-2", status="partial", results=[]))
    await store.save_synthesis("run-2", None, Spend(cost_usd=0.125))

    runs = await store.list_runs()
    assert [r.run_id for r in runs] == ["run-3", "run-2", "run-1"]
    assert (runs[1].status, runs[1].counts, runs[1].cost_usd) == ("partial", {"succeeded": 1, "failed": 1}, 0.75)
    assert runs[1].total_cost_usd == 0.875
    assert runs[1].task.startswith("Compare three databases in depth")
    assert len(runs[1].task) == 80
    assert (runs[0].counts, runs[0].cost_usd, runs[0].task) == ({}, 0.0, "Write a report")
    assert [r.run_id for r in await store.list_runs(limit=2)] == ["run-3", "run-2"]


async def test_concurrent_saves_from_many_tasks_all_land(store: Store) -> None:
    await started(store)
    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(store.save_result, "run-1", result(f"t{i % 50}", tokens=2))

    run = await store.get_run("run-1")
    assert run is not None
    assert set(run.results) == {f"t{i}" for i in range(50)}
    assert run.usage.input_tokens == 120


# --- ownership by lease ----------------------------------------------------------------------------


async def test_resuming_a_finished_run_clears_its_old_report_and_takes_it_over(store: Store, opener: Opener) -> None:
    await started(store)
    await store.finish_run("run-1", RunReport(run_id="run-1", plan_id="plan-1", status="failed", results=[]))

    async with opener("server-b") as other:
        resumed = await other.resume_run("run-1")
    assert (resumed.status, resumed.report, resumed.finished_at, resumed.owner) == ("running", None, None, "server-b")


async def test_a_run_another_live_server_holds_cannot_be_resumed_or_interrupted_from_here(
    store: Store, opener: Opener
) -> None:
    await started(store)
    async with opener("server-b") as other:
        with pytest.raises(StoreError, match="still running in server server-a"):
            await other.resume_run("run-1")
        assert await other.mark_interrupted() == []  # a second server starting never interrupts the first's runs
        await other.interrupt_runs(["run-1"])  # not its run: nothing happens
    with pytest.raises(StoreError, match=r"still running in this server \(server-a\)"):
        await store.resume_run("run-1")
    assert (await store.resume_run("run-1", not_running_here=True)).owner == "server-a"
    assert await status_of(store, "run-1") == "running"


async def test_heartbeats_keep_a_run_past_its_first_lease_and_without_them_it_is_interrupted_and_free(
    store: Store, opener: Opener, clock: Clock
) -> None:
    await started(store)
    for _ in range(3):
        clock.jump(LEASE_S * 0.6)
        assert await store.heartbeat([]) == (await store.heartbeat([]))  # nothing to stop, twice
        assert await status_of(store, "run-1") == "running"

    clock.jump(LEASE_S + 1)  # the owner died: no heartbeat within a lease
    async with opener("server-b") as other:
        assert await status_of(other, "run-1") == "interrupted"
        assert [r.status for r in await other.list_runs()] == ["interrupted"]
        assert await other.mark_interrupted() == ["run-1"]
        resumed = await other.resume_run("run-1")
        assert (resumed.status, resumed.owner) == ("running", "server-b")


async def test_a_cancel_request_from_another_server_reaches_the_owner_at_its_heartbeat(
    store: Store, opener: Opener
) -> None:
    await started(store, "run-1")
    await started(store, "run-2")
    async with opener("server-b") as other:
        asked = await other.request_cancel("run-1")
        assert asked is not None
        assert (asked.status, asked.cancel_requested) == ("running", True)
        beat = await store.heartbeat(["run-1", "run-2"])
        assert (beat.cancel, beat.lost) == (["run-1"], [])
        assert (await other.heartbeat([])).cancel == []  # not its run to cancel
        assert await other.request_cancel("run-x") is None

    await store.finish_run("run-1", RunReport(run_id="run-1", plan_id="plan-1", status="cancelled", results=[]))
    assert (await store.heartbeat(["run-2"])).cancel == []
    run = await store.get_run("run-1")
    assert run is not None
    assert (run.status, run.cancel_requested) == ("cancelled", False)


async def test_a_server_whose_run_was_taken_over_learns_it_and_cannot_end_it(
    store: Store, opener: Opener, clock: Clock
) -> None:
    await started(store)
    clock.jump(LEASE_S + 1)  # server-a stalled past its lease
    async with opener("server-b") as other:
        await other.resume_run("run-1")
        assert (await store.heartbeat(["run-1"])).lost == ["run-1"]
        with pytest.raises(StoreError, match="taken over by another server"):
            await store.finish_run("run-1", RunReport(run_id="run-1", plan_id="plan-1", status="failed", results=[]))
        await store.interrupt_runs(["run-1"])
        run = await other.get_run("run-1")
    assert run is not None
    assert (run.status, run.owner) == ("running", "server-b")


async def test_interrupting_at_shutdown_marks_only_this_servers_runs(store: Store) -> None:
    await started(store)
    await store.interrupt_runs(["run-1"])

    assert await status_of(store, "run-1") == "interrupted"
    assert (await store.resume_run("run-1")).status == "running"


async def test_a_run_whose_owner_process_on_this_machine_died_is_free_at_once(opener: Opener) -> None:
    child = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    pid = int(child.stdout)  # exited and reaped: no process has this pid now (barring reuse)
    async with opener(f"{this_machine()}:{pid}:deadbeef") as crashed:
        await started(crashed)

    async with opener("server-b") as other:
        assert await status_of(other, "run-1") == "interrupted"  # no need to wait out the lease
        assert await other.mark_interrupted() == ["run-1"]
        assert (await other.resume_run("run-1")).owner == "server-b"


# --- runs on Temporal: held by their workflow ------------------------------------------------------


async def test_a_run_on_temporal_is_held_by_its_workflow_and_ended_by_a_worker_not_by_a_lease(
    store: Store, opener: Opener, clock: Clock
) -> None:
    temporal = store.as_owner(temporal_owner("default", "subagent-mcp"))
    await started(temporal)  # created by a server, for Temporal's workers
    clock.jump(LEASE_S * 10)  # no server renews its lease
    assert (await store.heartbeat(["run-1"])).lost == []  # the server following it is not told to stop
    await store.interrupt_runs(["run-1"])  # a server shutting down leaves it to its workflow
    async with opener("server-b") as other:
        assert await status_of(other, "run-1") == "running"
        assert await other.mark_interrupted() == []
        with pytest.raises(StoreError, match="still running in server temporal:default/subagent-mcp"):
            await other.resume_run("run-1")
    await store.heartbeat(["run-1"])  # the server following it (or synthesizing its answer) says so
    run = await store.get_run("run-1")
    assert run is not None
    assert run.lease_live(clock.now)  # so a server waiting on an orchestration waits for its synthesis
    async with opener(temporal.owner) as worker:  # what a worker opens
        await worker.save_result("run-1", result("a"))
        await worker.finish_run("run-1", RunReport(run_id="run-1", plan_id="plan-1", status="succeeded", results=[]))
    assert await status_of(store, "run-1") == "succeeded"


async def test_a_run_on_temporal_whose_workflow_is_gone_is_freed_for_any_server_to_resume(
    store: Store, opener: Opener
) -> None:
    temporal = store.as_owner(temporal_owner("default", "subagent-mcp"))
    await started(temporal)
    await temporal.interrupt_runs(["run-1"])  # a server found its workflow failed or terminated
    async with opener("server-b") as other:
        assert (await other.resume_run("run-1")).owner == "server-b"
