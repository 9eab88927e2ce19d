"""Ask any backend for a JSON object, check it against a schema, and allow exactly one repair turn.

Native structured outputs make invalid JSON rare, not impossible: a ``max_tokens`` cut-off, a
refusal, or a semantic check (a plan with a cycle) still fail. The repair turn shows the model
its own reply and the error; a second failure fails the call with every attempt's usage counted.
Every reply passes ``safe_output`` first, so what is returned can always be stored and sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonschema.exceptions import ValidationError
from pydantic import BaseModel
from referencing.exceptions import Unresolvable

from .backends.base import ModelBackend
from .contracts import Completion, CompletionRequest, JsonObject, ModelMessage, Usage
from .errors import InputError, ModelError, ModelOutputError, ModelRefusalError
from .safe_output import UnsafeOutput, load_json, safe_completion
from .schemas import validator

Check = Callable[[JsonObject], None]
"""An extra check after the schema; raises ``ValueError`` with a message the model can act on."""

MAX_REPAIR_TURNS = 1


class StructuredOutput(BaseModel):
    """A schema-valid JSON object and what it took to get it."""

    output: JsonObject
    usage: Usage
    attempts: int
    model: str
    repaired: bool = False


def schema_errors(value: Any, schema: JsonObject) -> list[str]:
    """Human-readable schema violations of ``value``, at most five.

    Raises:
        InputError: ``schema`` refers to something outside itself (``schemas.check_output_schema`` refuses those).
    """
    try:
        errors = sorted(validator(schema).iter_errors(value), key=lambda e: list(e.path))
    except Unresolvable as exc:
        raise InputError(f"the output schema refers to {exc.ref[:100]!r}, which is not in the schema") from None
    return [f"at {'/'.join(str(p) for p in e.path) or '(root)'}: {_message(e)}" for e in errors[:5]]


def _message(error: ValidationError) -> str:
    """jsonschema's message, except that a too long or too short array is counted, not printed whole."""
    if error.validator in ("maxItems", "minItems") and isinstance(error.instance, list):
        bound = "at most" if error.validator == "maxItems" else "at least"
        return f"{len(error.instance)} items, but {bound} {error.validator_value} are allowed"
    return error.message


def _problem(completion: Completion, schema: JsonObject, check: Check | None) -> tuple[JsonObject | None, str]:
    """Parse and check one reply: ``(object, "")`` if good, else ``(None, what is wrong)``."""
    if completion.stop_reason == "max_tokens":
        return None, "the reply was cut off at the max_tokens limit; answer more concisely"
    try:
        value = load_json(completion.text)
    except UnsafeOutput as exc:
        return None, str(exc)
    if not isinstance(value, dict):
        return None, "the reply must be a JSON object"
    obj: JsonObject = value
    errors = schema_errors(obj, schema)
    if errors:
        return None, "the reply does not match the schema: " + "; ".join(errors)
    if check is not None:
        try:
            check(obj)
        except ValueError as exc:
            return None, str(exc)
    return obj, ""


async def complete_json(
    backend: ModelBackend, request: CompletionRequest, check: Check | None = None
) -> StructuredOutput:
    """Get one valid object for ``request.output_schema`` with at most one repair turn.

    Raises:
        ModelError: the backend failed, the model refused, or the output stayed invalid; the
            error's ``usage`` and ``attempts`` include every request made here.
    """
    usage, attempts = Usage(), 0
    messages = list(request.messages)
    for turn in range(MAX_REPAIR_TURNS + 1):
        try:
            completion = await backend.complete(request.model_copy(update={"messages": messages}))
        except ModelError as exc:
            exc.usage, exc.attempts = usage + exc.usage, attempts + exc.attempts
            raise
        completion = safe_completion(completion)  # from here on, every string can be stored and sent
        usage, attempts = usage + completion.usage, attempts + completion.attempts
        if completion.stop_reason == "refusal":
            why = f" ({completion.refusal})" if completion.refusal else ""
            raise ModelRefusalError(
                f"the model ({completion.model}) refused this request{why}; rephrase the instructions",
                usage=usage,
                attempts=attempts,
                model=completion.model,
                request_id=completion.request_id,
            )
        obj, problem = _problem(completion, request.output_schema, check)
        if obj is not None:
            return StructuredOutput(
                output=obj, usage=usage, attempts=attempts, model=completion.model, repaired=turn > 0
            )
        if turn == MAX_REPAIR_TURNS:
            raise ModelOutputError(
                f"the model's output was invalid after {turn + 1} tries: {problem}",
                usage=usage,
                attempts=attempts,
                model=completion.model,
                request_id=completion.request_id,
            )
        messages = [
            *messages,
            ModelMessage(role="assistant", content=completion.text or "(empty reply)"),
            ModelMessage(
                role="user",
                content=f"Your reply could not be used: {problem}. Reply again with only the corrected JSON object.",
            ),
        ]
    raise AssertionError("unreachable")  # pragma: no cover
