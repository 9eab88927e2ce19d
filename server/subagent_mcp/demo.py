"""The offline demo backend: a fixed plan and invented answers, clearly labelled, no key needed."""

from __future__ import annotations

from .backends.scripted import ScriptedBackend, sample_for_schema
from .contracts import CompletionRequest, JsonObject

DEMO_LABEL = "[demo output: no model was called]"


def demo_reply(request: CompletionRequest) -> JsonObject:
    """Plan requests get a small fan-out/fan-in plan; everything else a labelled schema-valid object."""
    if request.label == "plan":
        return {
            "summary": f"{DEMO_LABEL} research two angles in parallel, then analyse and write up.",
            "subtasks": [
                {
                    "id": "research-a",
                    "role": "researcher",
                    "instructions": "Research the first angle.",
                    "depends_on": [],
                },
                {
                    "id": "research-b",
                    "role": "researcher",
                    "instructions": "Research the second angle.",
                    "depends_on": [],
                },
                {
                    "id": "analyse",
                    "role": "analyst",
                    "instructions": "Compare the two angles and recommend.",
                    "depends_on": ["research-a", "research-b"],
                },
                {"id": "write-up", "role": "writer", "instructions": "Write the answer.", "depends_on": ["analyse"]},
            ],
        }
    value = sample_for_schema(request.output_schema, label=DEMO_LABEL)
    return value if isinstance(value, dict) else {"value": value}


def demo_backend() -> ScriptedBackend:
    return ScriptedBackend(demo_reply)
