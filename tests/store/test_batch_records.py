"""The store's record of Message Batches, on SQLite and PostgreSQL: what a restarted run finds in flight, and
what it must send afresh."""

from __future__ import annotations

import pytest

from store_setup import OPTIONS
from subagent_mcp.contracts import Plan, Subtask
from subagent_mcp.store import BatchEntry, Store

pytestmark = pytest.mark.anyio


async def add_run(store: Store, run_id: str = "run-1") -> None:
    plan = Plan(plan_id="p", task="t", subtasks=[Subtask(id=i, role="worker", instructions=i) for i in ("a", "b")])
    await store.save_plan(plan)
    await store.create_run(run_id, "p", OPTIONS)


async def test_a_recorded_request_is_found_by_its_digest_until_its_result_is_taken(db_location: str) -> None:
    async with Store.open(db_location) as store:
        await add_run(store)
        await store.record_batch("run-1", "b1", [BatchEntry(custom_id="r0", task_id="a", digest="da"),
                                                  BatchEntry(custom_id="r1", task_id="b", digest="db")])  # fmt: skip

        assert await store.open_batch_request("run-1", "da") == BatchEntry(
            batch_id="b1", custom_id="r0", task_id="a", digest="da"
        )
        assert await store.open_batch_request("run-2", "da") is None  # another run's requests are not ours
        await store.consume_batch_requests("b1", ["r0"])
        assert await store.open_batch_request("run-1", "da") is None  # taken: a later attempt is sent afresh
        assert await store.open_batch_request("run-1", "db") is not None
        carried = await store.batch_requests("b1")  # taken or not: all its results file may name
        assert [(e.custom_id, e.task_id) for e in carried] == [("r0", "a"), ("r1", "b")]

        [record] = await store.run_batches("run-1")
    assert (record.batch_id, record.status, record.requests, record.consumed) == ("b1", "in_progress", 2, 1)
    assert record.task_ids == ["a", "b"]


async def test_a_cancelled_batch_is_never_re_attached_and_an_open_one_survives_reopening(db_location: str) -> None:
    async with Store.open(db_location) as store:
        await add_run(store)
        await store.record_batch("run-1", "b1", [BatchEntry(custom_id="r0", task_id="a", digest="da")])
        await store.record_batch("run-1", "b2", [BatchEntry(custom_id="r0", task_id="b", digest="db")])
        await store.end_batch("b1", "canceled")
    async with Store.open(db_location) as reopened:  # as a restarted server finds it
        assert await reopened.open_batch_request("run-1", "da") is None
        assert await reopened.open_batch_request("run-1", "db") == BatchEntry(
            batch_id="b2", custom_id="r0", task_id="b", digest="db"
        )
        assert [(b.batch_id, b.status) for b in await reopened.run_batches("run-1")] == [
            ("b1", "canceled"), ("b2", "in_progress"),
        ]  # fmt: skip
