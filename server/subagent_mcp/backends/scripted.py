"""A deterministic backend for tests, benchmarks and ``--demo``: no network, every request recorded.

``ScriptedBackend(reply)`` hands each request to ``reply`` (sync or async), like pydantic-ai's
``FunctionModel``; with no ``reply`` it invents a schema-valid object, like its ``TestModel``.
``reply`` may raise a ``ModelError`` to simulate a failure, or await an ``anyio.Event`` to hold
a call in flight.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..contracts import Completion, CompletionRequest, JsonObject, Usage

Reply = Callable[[CompletionRequest], "Completion | JsonObject | str | Awaitable[Completion | JsonObject | str]"]


@dataclass
class ScriptedBackend:
    """A ``ModelBackend`` whose answers come from ``reply``; ``seen`` keeps every request in order."""

    reply: Reply | None = None
    seen: list[CompletionRequest] = field(default_factory=list[CompletionRequest])

    async def complete(self, request: CompletionRequest) -> Completion:
        self.seen.append(request)
        answer: Any = self.reply(request) if self.reply else sample_for_schema(request.output_schema)
        if inspect.isawaitable(answer):
            answer = await answer
        return as_completion(answer, request)

    async def aclose(self) -> None:
        return None


def as_completion(answer: Completion | JsonObject | str, request: CompletionRequest) -> Completion:
    """Wrap a dict or text reply in a ``Completion`` with a plausible, deterministic usage."""
    if isinstance(answer, Completion):
        return answer
    text = answer if isinstance(answer, str) else json.dumps(answer)
    prompt_chars = len(request.system) + sum(len(m.content) for m in request.messages)
    usage = Usage(input_tokens=max(1, prompt_chars // 4), output_tokens=max(1, len(text) // 4))
    return Completion(text=text, stop_reason="end_turn", usage=usage, model=request.model)


def sample_for_schema(schema: JsonObject, label: str = "scripted") -> Any:
    """A small value that satisfies ``schema`` (objects, arrays, scalars, enums, const, anyOf)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample_for_schema(schema[key][0], label)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        required: list[str] = schema.get("required", list(props))
        return {name: sample_for_schema(props[name], name) for name in required if name in props}
    if kind == "array":
        minimum = int(schema.get("minItems", 1))
        return [sample_for_schema(schema.get("items", {"type": "string"}), label) for _ in range(max(minimum, 1))]
    if kind == "string":
        return f"{label} (scripted)"
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    return None
