"""Re-attaching to a recorded batch: its results are read as the whole batch's, whichever subtasks came back first.

A restarted server's subtasks re-attach to their batch one by one; the batch may end, and its results be
read, before the last of them has attached. Driven by hand here (one call after the other) so the order is
certain, with the real batch adapter on the fake API and a real store.
"""

from __future__ import annotations

import anyio
import pytest
from pydantic import SecretStr

from store_setup import OPTIONS
from subagent_mcp.backends.batch import AnthropicBatches
from subagent_mcp.batching import BatchBackend, request_digest
from subagent_mcp.contracts import CompletionRequest, Plan, Subtask
from subagent_mcp.planning import subtask_request
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.settings import Settings
from subagent_mcp.store import BatchEntry, Store
from subagent_mcp.testing import serve_fake_anthropic

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-batch-reattach"
PLAN = Plan(
    plan_id="p-reattach",
    task="Write a short report",
    subtasks=[Subtask(id=i, role="writer", instructions=f"do {i}") for i in ("a", "b")],
)


def requests_of(settings: Settings) -> list[CompletionRequest]:
    return [subtask_request(s, PLAN.task, None, settings, BUILTIN_ROLES) for s in PLAN.subtasks]


async def test_a_subtask_that_re_attaches_first_gets_its_result_though_its_sibling_has_not_attached_yet(
    db_location: str,
) -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake, Store.open(db_location) as store:
            settings = Settings(anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, retry_max_wait_s=0)
            a, b = requests_of(settings)
            await store.save_plan(PLAN)
            await store.create_run("run-1", PLAN.plan_id, OPTIONS)
            # what the server before the restart did: sent a and b as one batch and recorded it
            fake.batches.hold()
            earlier = AnthropicBatches(settings)
            pairs = [("r0-a", a), ("r1-b", b)]
            batch_id = await earlier.submit(pairs)
            await earlier.aclose()
            entries = [BatchEntry(custom_id=c, task_id=r.label, digest=request_digest(r)) for c, r in pairs]
            await store.record_batch("run-1", batch_id, entries)
            fake.batches.release()

            batcher = BatchBackend(AnthropicBatches(settings), store, "run-1", poll_s=0.002, gather_s=600)
            async with batcher.running():
                first = await batcher.complete(a)  # the batch ends and its results are read while b is still away
                second = await batcher.complete(b)

    answered = [r["message"]["content"][0]["text"] for r in fake.batches.created[0].results.values()]
    assert [first.text, second.text] == answered  # each its own reply, read from the one results file
    assert len(fake.batches.created) == 1  # both re-attached: nothing sent again
    assert len(fake.batches.billed) == 2
