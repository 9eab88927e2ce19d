"""Run tests' scripted model: a fake-API handler that holds each reply until the test lets it go, and plans.

Shared by the run tests (test_background_runs, test_replicas, test_run_lifecycle, test_batch_mode, test_temporal).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.handles import RunHandle
from subagent_mcp.testing import FakeReply, FakeRequest, hang_reply, json_reply
from subagent_mcp.testing.results import text_of


def handle_of(result: Any) -> RunHandle:
    """A run tool's answer as the handle it must be (not an error, not a finished report)."""
    assert not result.is_error, text_of(result)
    return RunHandle.model_validate(result.structured_content)


def task_of(request: FakeRequest) -> str:
    if "Plan the user's task" in request.system_text:
        return "(planner)"
    if request.schema is not None and "answer" in request.schema.get("properties", {}):
        return "(synthesis)"
    return request.subtask_id


def plan(*ids: str, deps: dict[str, list[str]] | None = None) -> JsonObject:
    deps = deps or {}
    subtasks = [{"id": i, "role": "writer", "instructions": f"do {i}", "depends_on": deps.get(i, [])} for i in ids]
    return {"plan_id": f"p-{'-'.join(ids)}", "task": "Write a short report", "subtasks": subtasks}


class Gates:
    """The fake holds each call's reply until the test opens that call's gate (or ``hold`` says hang)."""

    def __init__(self, hold: set[str] | None = None) -> None:
        self.arrived: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.open: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.hold = hold or set()

    def release(self, *tasks: str) -> None:
        for task in tasks:
            self.open[task].set()

    async def __call__(self, request: FakeRequest) -> FakeReply:
        task = task_of(request)
        self.arrived[task].set()
        if task in self.hold:
            return hang_reply()
        await self.open[task].wait()
        if task == "(planner)":
            return json_reply(demo_plan_draft())
        reply = sample_for_schema(request.schema or {})
        if "summary" in reply:
            reply["summary"] = f"{task} done"
        return json_reply(reply)
