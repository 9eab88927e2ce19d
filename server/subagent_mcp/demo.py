"""The offline demo backend: a fixed plan and invented answers, clearly labelled, no key needed."""

from __future__ import annotations

import re
from typing import Any

import anyio

from .backends.scripted import ScriptedBackend, sample_for_schema
from .contracts import CompletionRequest, JsonObject

DEMO_LABEL = "[demo output: no model was called]"

DEMO_NOTE = "Demo mode is on: a scripted backend answers, no model is called and every output says so."
"""Said when a server starts in demo mode (stdio: on stderr; HTTP: with its address)."""


DEMO_LATENCY_S = 0.4
"""Each demo call takes this long, so the parallel steps and the progress display can be watched."""


def demo_plan_draft(max_subtasks: int | None = None) -> JsonObject:
    """The planner's reply in the demo: research in parallel, analysis, a write-up; within ``max_subtasks``."""
    limit = 4 if max_subtasks is None else max_subtasks
    if limit >= 4:
        subtasks = [
            _step("research-a", "researcher", "Research the first angle."),
            _step("research-b", "researcher", "Research the second angle."),
            _step("analyse", "analyst", "Compare the two angles and recommend.", "research-a", "research-b"),
            _step("write-up", "writer", "Write the answer.", "analyse"),
        ]
    elif limit == 3:
        subtasks = [
            _step("research-a", "researcher", "Research the first angle."),
            _step("research-b", "researcher", "Research the second angle."),
            _step("write-up", "writer", "Compare the two angles and write the answer.", "research-a", "research-b"),
        ]
    elif limit == 2:
        subtasks = [
            _step("research", "researcher", "Research the task."),
            _step("write-up", "writer", "Write the answer.", "research"),
        ]
    else:
        subtasks = [_step("write-up", "writer", "Research the task and write the answer.")]
    return {"subtasks": subtasks}


def _step(task_id: str, role: str, instructions: str, *depends_on: str) -> JsonObject:
    """One demo subtask; its instructions carry the demo label, so a demo plan says what it is."""
    return {"id": task_id, "role": role, "instructions": f"{DEMO_LABEL} {instructions}", "depends_on": list(depends_on)}


def demo_reply(request: CompletionRequest) -> JsonObject:
    """Plan requests get ``demo_plan_draft()`` within the subtask count the brief states (as a model reads it);
    the rest a labelled object."""
    if request.label == "plan":
        found = re.search(r"at most (\d+) subtasks", request.system)
        return demo_plan_draft(int(found.group(1)) if found else None)
    value = _labelled(sample_for_schema(request.output_schema))
    return value if isinstance(value, dict) else {"value": value}


def _labelled(value: Any) -> Any:
    """Prefix every string with the demo label, so no demo output can pass for a model's."""
    if isinstance(value, str):
        return f"{DEMO_LABEL} {value}"
    if isinstance(value, list):
        return [_labelled(v) for v in value]
    if isinstance(value, dict):
        return {k: _labelled(v) for k, v in value.items()}
    return value


def demo_backend(latency_s: float = DEMO_LATENCY_S) -> ScriptedBackend:
    """The ``--demo`` backend: ``demo_reply`` after ``latency_s`` of simulated model time."""

    async def reply(request: CompletionRequest) -> JsonObject:
        await anyio.sleep(latency_s)
        return demo_reply(request)

    return ScriptedBackend(reply)
