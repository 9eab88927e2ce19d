"""What we send the Messages API and how we read what it sends back, for live calls and Message Batches alike.

A request's parameters carry block-level cache breakpoints where its shared prefix ends; a reply is
untrusted (the SDK does not validate it): its shape and usage are checked before it becomes a ``Completion``.
"""

from __future__ import annotations

from anthropic import Omit, omit
from anthropic.types import CacheControlEphemeralParam, Message, MessageParam, TextBlock, TextBlockParam
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from pydantic import ValidationError

from ..contracts import CacheMarks, Completion, CompletionRequest, ModelMessage, Usage
from ..errors import InputError
from ..safe_output import safe_completion
from ..schemas import api_schema
from .anthropic_tools import server_tool_counts, tool_params
from .http_guard import UnusableReplyError

MAX_PLAUSIBLE_TOKENS = 10_000_000
"""More tokens than any context window holds: a count above it (or below 0) is a broken reply, not a bill."""


def message_params(request: CompletionRequest) -> MessageCreateParamsNonStreaming:
    """The Messages API parameters ``complete`` sends for ``request``: what a Message Batches request carries.

    Raises:
        InputError: the output schema cannot be sent to the API.
    """
    try:
        schema = api_schema(request.output_schema)  # says where and why it cannot be sent, as an InputError
    except InputError:
        raise
    except Exception as exc:  # whatever else the SDK's transform raises is still the schema's fault, not a crash
        raise InputError(f"output_schema cannot be sent to the Anthropic API: {type(exc).__name__}: {exc}") from None
    messages = [_message_param(m) for m in request.messages]
    if request.cache is not None and request.cache.first_user_chars and messages:
        messages[0] = _split_first(request.messages[0], request.cache)
    params: MessageCreateParamsNonStreaming = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    system = _system_param(request)
    if not isinstance(system, Omit):
        params["system"] = system
    if request.server_tools:
        params["tools"] = tool_params(request.server_tools, request.web_fetch_max_content_tokens)
    return params


def _cache_control(marks: CacheMarks) -> CacheControlEphemeralParam:
    """A block-level breakpoint; never the top-level automatic one, which would write each unique suffix too."""
    return {"type": "ephemeral", "ttl": "1h"} if marks.ttl == "1h" else {"type": "ephemeral"}


def _system_param(request: CompletionRequest) -> str | list[TextBlockParam] | Omit:
    if not request.system:
        return omit
    if request.cache is None or not request.cache.system:
        return request.system
    return [{"type": "text", "text": request.system, "cache_control": _cache_control(request.cache)}]


def _split_first(message: ModelMessage, marks: CacheMarks) -> MessageParam:
    """The first user turn as two blocks: the shared head, marked for the cache, then the rest."""
    head, rest = message.content[: marks.first_user_chars], message.content[marks.first_user_chars :]
    blocks: list[TextBlockParam] = [{"type": "text", "text": head, "cache_control": _cache_control(marks)}]
    if rest:
        blocks.append({"type": "text", "text": rest})
    return {"role": "user", "content": blocks}


def _message_param(message: ModelMessage) -> MessageParam:
    if message.role == "user":
        return {"role": "user", "content": message.content}
    return {"role": "assistant", "content": message.content}


def completion_of(message: Message, *, attempts: int = 1) -> Completion:
    """Our ``Completion`` of ``message``; the SDK does not validate replies, so neither shape nor usage is trusted.

    Made safe here, where replies are read: the budget logs the model a reply names before ``structured`` runs.

    Raises:
        UnusableReplyError: the reply is malformed, or reports usage no real call can have.
    """
    try:
        completion = Completion(
            text="".join(block.text for block in message.content if isinstance(block, TextBlock)),
            stop_reason=message.stop_reason,
            usage=_usage(message),
            model=message.model,
            attempts=attempts,
            request_id=getattr(message, "_request_id", None),  # absent on a message a batch returned
            refusal=_refusal_text(message),
        )
    except (AttributeError, TypeError, ValidationError) as exc:
        raise UnusableReplyError(f"the API's reply is not a well-formed message ({type(exc).__name__})") from None
    return safe_completion(completion)


def _usage(message: Message) -> Usage:
    """The reply's token counts, each a whole number from 0 to ``MAX_PLAUSIBLE_TOKENS``, else refused."""
    raw = message.usage
    counts: dict[str, object] = {
        "input_tokens": raw.input_tokens,
        "output_tokens": raw.output_tokens,
        "cache_read_tokens": raw.cache_read_input_tokens or 0,
        "cache_write_tokens": raw.cache_creation_input_tokens or 0,
        **server_tool_counts(raw.server_tool_use),
    }
    for name, value in counts.items():
        if type(value) is not int or not 0 <= value <= MAX_PLAUSIBLE_TOKENS:
            raise UnusableReplyError(f"the API's reply reports impossible usage: {name} = {repr(value)[:40]}")
    return Usage.model_validate(counts)


def _refusal_text(message: Message) -> str | None:
    """The API's own words on a refusal (category and explanation), if it gave any."""
    details = getattr(message, "stop_details", None)
    if message.stop_reason != "refusal" or details is None:
        return None
    parts = [str(p) for p in (getattr(details, "category", None), getattr(details, "explanation", None)) if p]
    return ": ".join(parts) or None
