"""The offline demo backend: a fixed plan and invented answers, clearly labelled, no key needed."""

from __future__ import annotations

from typing import Any

import anyio

from .backends.scripted import ScriptedBackend, sample_for_schema
from .contracts import CompletionRequest, JsonObject

DEMO_LABEL = "[demo output: no model was called]"


DEMO_LATENCY_S = 0.4
"""Each demo call takes this long, so the parallel steps and the progress display can be watched."""


def demo_plan_draft() -> JsonObject:
    """The planner's reply in the demo: two research subtasks in parallel, then analysis, then a write-up."""
    return {
        "summary": f"{DEMO_LABEL} research two angles in parallel, then analyse and write up.",
        "subtasks": [
            {"id": "research-a", "role": "researcher", "instructions": "Research the first angle.", "depends_on": []},
            {"id": "research-b", "role": "researcher", "instructions": "Research the second angle.", "depends_on": []},
            {
                "id": "analyse",
                "role": "analyst",
                "instructions": "Compare the two angles and recommend.",
                "depends_on": ["research-a", "research-b"],
            },
            {"id": "write-up", "role": "writer", "instructions": "Write the answer.", "depends_on": ["analyse"]},
        ],
    }


def demo_reply(request: CompletionRequest) -> JsonObject:
    """Plan requests get ``demo_plan_draft()``; everything else a labelled schema-valid object."""
    if request.label == "plan":
        return demo_plan_draft()
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
