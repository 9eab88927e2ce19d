"""A store that cannot be written (a full disk) ends a run visibly: stopped, marked, and what was not stored said.

SQLite's own limit on a database's size (``PRAGMA max_page_count``) makes the real store fail with
"database or disk is full", as a full disk does.
"""

from __future__ import annotations

import math
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.contracts import CompletionRequest, JsonObject, Plan, RunReport
from subagent_mcp.prompts import subtask_id_of
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.store import StoreError

pytestmark = pytest.mark.anyio

BIG = "x" * 50_000  # each result needs fresh pages: no insert fits in the free space of existing ones


def plan(*ids: str) -> Plan:
    subtasks = [{"id": i, "role": "writer", "instructions": f"do {i}"} for i in ids]
    return Plan.model_validate({"plan_id": "p-full", "task": "Write", "subtasks": subtasks})


async def test_a_full_disk_stops_the_run_stores_it_interrupted_and_says_what_was_billed_but_not_stored(
    tmp_path: Path,
) -> None:
    watching, first_done, disk_full = anyio.Event(), anyio.Event(), anyio.Event()

    async def reply(request: CompletionRequest) -> JsonObject:
        await watching.wait()
        if subtask_id_of(request.messages[0].content) != "a":
            await disk_full.wait()  # b and c finish only once the disk is full
        return {"summary": "s", "text": BIG}

    settings = Settings.from_env({}, env_file=None, db_path=str(tmp_path / "runs.db"), max_concurrency=1)
    async with Service.open(settings, ScriptedBackend(reply)) as service:
        live = await service.start_execute(plan("a", "b", "c"), max_concurrency=1)

        async def on_progress(done: int, total: int | None, message: str, level: str) -> None:
            if message.startswith("a succeeded"):
                first_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(service.runs.wait, live, math.inf, on_progress)
            while not live.inboxes:  # the waiting caller is listening before a can finish
                await anyio.lowlevel.checkpoint()
            watching.set()
            await first_done.wait()
            tg.cancel_scope.cancel()
        with service.store.sync._lock:  # the database may not grow any more
            (pages,) = service.store.sync._conn.execute("PRAGMA page_count").fetchone()
            service.store.sync._conn.execute(f"PRAGMA max_page_count = {pages}")
        disk_full.set()
        with pytest.raises(StoreError) as stopped:
            await service.finish(live)
        record = await service.store.get_run(live.run_id)
        with service.store.sync._lock:
            service.store.sync._conn.execute("PRAGMA max_page_count = 1073741823")
        resumed = await service.resume_run(live.run_id)

    message = str(stopped.value)
    assert "database or disk is full" in message
    assert f"Run {live.run_id} was stopped so that nothing more is spent, and is stored as interrupted" in message
    assert "Billed but not stored:" in message
    assert "$0.0000" not in message  # b's call was billed and is named
    assert record is not None
    assert record.status == "interrupted"
    assert set(record.succeeded_ids()) == {"a"}
    assert isinstance(resumed, RunReport)
    assert resumed.status == "succeeded"
