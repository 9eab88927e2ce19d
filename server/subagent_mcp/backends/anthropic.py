"""The Anthropic Messages API backend: with ``http_guard`` and ``anthropic_tools``, all that imports ``anthropic``.

One retry layer (tenacity; the SDK client gets ``max_retries=0``), native structured outputs via
``output_config.format``, a deadline on each whole attempt, replies capped in size and checked for
impossible usage, and every final failure mapped to a ``ModelError`` whose message says what
happened and never contains the API key. Validation and repair turns live above this seam.
A role's server tools (web search, ...) run inside the call; a ``pause_turn`` is continued, not answered.
Given the service's gate (``use_gate``), each attempt holds a slot only while it is on the wire and
reports 429/529 to it, so a retry waits without a slot and the whole pool slows down together.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType
from typing import cast

import anyio
import httpx2
from anthropic import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncAnthropic,
    Omit,
    omit,
    transform_schema,
)
from anthropic.types import (
    CacheControlEphemeralParam,
    Message,
    MessageParam,
    TextBlock,
    TextBlockParam,
    ToolUnionParam,
)
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..contracts import CacheMarks, Completion, CompletionRequest, ModelMessage, Usage
from ..errors import (
    InputError,
    ModelError,
    ModelReplyError,
    ModelRequestError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from ..safe_output import safe_completion
from ..settings import Settings
from .anthropic_client import LazyClient
from .anthropic_tools import assistant_content, server_tool_counts, tool_params
from .http_guard import UnusableReplyError
from .limited import OVERLOAD_STATUSES, AdaptiveLimiter, GatedCall
from .retry import Sleep, WaitRetryAfterOrBackoff, is_transient_status, retry_after_s

logger = logging.getLogger(__name__)

MAX_PLAUSIBLE_TOKENS = 10_000_000
"""More tokens than any context window holds: a count above it (or below 0) is a broken reply, not a bill."""

MAX_CONTINUATIONS = 5
"""Most times a ``pause_turn`` reply is sent back to be continued before the call fails."""

Prompt = tuple[str | list[TextBlockParam] | Omit, list[MessageParam], list[ToolUnionParam] | Omit]
"""What one request sends besides the model and schema: system, messages and server tools."""

_STATUS_WORDS = {
    408: "request timeout",
    409: "conflict",
    429: "rate limited",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
    529: "overloaded",
}


class AnthropicBackend:
    """A ``ModelBackend`` over ``AsyncAnthropic``; the client is built on first use, never at import."""

    def __init__(self, settings: Settings, *, sleep: Sleep | None = None) -> None:
        self._settings = settings
        self._sleep: Sleep = sleep or anyio.sleep
        self._client = LazyClient(settings)
        self._gate = AdaptiveLimiter.open()

    def use_gate(self, gate: AdaptiveLimiter) -> None:
        """Take a slot of ``gate`` for each attempt (see ``backends/limited.py``)."""
        self._gate = gate

    async def __aenter__(self) -> AnthropicBackend:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client and its pooled connections."""
        await self._client.aclose()

    async def complete(self, request: CompletionRequest) -> Completion:
        """Send ``request`` (retrying transient failures) and return the raw reply.

        Raises:
            ConfigError: no API key, or a non-loopback API while remote requests are disallowed.
            ModelRequestError, ModelUnavailableError, ModelTimeoutError: the request failed for good.
            ModelReplyError: the reply was refused (past the size cap, malformed, impossible usage).
        """
        client = self._client.get()
        try:
            schema = transform_schema(request.output_schema)
        except (ValueError, TypeError) as exc:
            raise InputError(f"the output schema cannot be sent to the Anthropic API: {exc}") from None
        messages = [_message_param(m) for m in request.messages]
        system = _system_param(request)
        if request.cache is not None and request.cache.first_user_chars and messages:
            messages[0] = _split_first(request.messages[0], request.cache)
        tools = tool_params(request.server_tools) if request.server_tools else omit
        async with self._gate.call() as call:
            return await self._converse(client, request, (system, messages, tools), schema, call)

    async def _converse(
        self,
        client: AsyncAnthropic,
        request: CompletionRequest,
        prompt: Prompt,
        schema: dict[str, object],
        call: GatedCall,
    ) -> Completion:
        """Send the request, continuing a ``pause_turn`` (a long server-tool turn) up to ``MAX_CONTINUATIONS`` times.

        The reply is the last message's; its usage and attempts are those of every message sent.
        """
        spent, attempts = Usage(), 0
        for turn in range(MAX_CONTINUATIONS + 1):
            try:
                message, completion = await self._send(client, request, prompt, schema, call)
            except ModelError as exc:
                exc.usage, exc.attempts = spent + exc.usage, attempts + exc.attempts
                raise
            spent, attempts = spent + completion.usage, attempts + completion.attempts
            if completion.stop_reason != "pause_turn":
                return completion.model_copy(update={"usage": spent, "attempts": attempts})
            if turn < MAX_CONTINUATIONS:  # the API resumes the turn from its own paused content
                system, messages, tools = prompt
                prompt = (system, [*messages, {"role": "assistant", "content": assistant_content(message)}], tools)
        raise ModelReplyError(
            f"the model's turn was still paused (pause_turn) after {MAX_CONTINUATIONS} continuations; "
            "lower the role's max_uses or split the subtask",
            usage=spent,
            attempts=attempts,
            model=request.model,
        )

    async def _send(
        self,
        client: AsyncAnthropic,
        request: CompletionRequest,
        prompt: Prompt,
        schema: dict[str, object],
        call: GatedCall,
    ) -> tuple[Message, Completion]:
        system, messages, tools = prompt
        failures: list[BaseException] = []

        async def attempt() -> tuple[Message, Completion]:
            async with call.attempt() as slot:  # held on the wire only, not while a retry waits
                try:
                    # httpx's timeouts bound each read, not the request: a reply trickling in a byte at a
                    # time would never end. The deadline covers the whole attempt, body included.
                    with anyio.fail_after(self._settings.request_timeout_s):
                        message = await client.messages.create(
                            model=request.model,
                            max_tokens=request.max_tokens,
                            system=system,
                            messages=messages,
                            output_config={"format": {"type": "json_schema", "schema": schema}},
                            tools=tools,
                        )
                    completion = _completion(message, attempts=len(failures) + 1)
                except TimeoutError:
                    timeout = APITimeoutError(request=httpx2.Request("POST", client.base_url.join("v1/messages")))
                    failures.append(timeout)
                    raise timeout from None
                except (APIError, UnusableReplyError) as exc:
                    failures.append(exc)
                    if isinstance(exc, APIStatusError) and exc.status_code in OVERLOAD_STATUSES:
                        slot.overloaded(retry_after_s(exc.response.headers))
                    raise
                slot.succeeded()
                return message, completion

        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._settings.max_retries + 1),
            wait=WaitRetryAfterOrBackoff(_retry_headers, self._settings.retry_max_wait_s),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(request, state),
            reraise=True,
        )
        try:
            return cast(tuple[Message, Completion], await retrying(attempt))
        except APIError as exc:
            raise self._final_error(exc, failures, request) from exc
        except UnusableReplyError as exc:  # never retried: a broken upstream would only repeat it
            raise ModelReplyError(
                self._redact(f"Anthropic API reply refused: {exc}; it was not retried, and what it cost is unknown"),
                attempts=len(failures),
                model=request.model,
            ) from exc

    def _log_retry(self, request: CompletionRequest, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        status = exc.status_code if isinstance(exc, APIStatusError) else None
        request_id = exc.request_id if isinstance(exc, APIStatusError) else None
        detail = _detail(exc) if isinstance(exc, APIStatusError) else ""
        label = _label(exc, self._settings.request_timeout_s) if exc else "unknown error"
        logger.warning(
            "Anthropic request %s failed on attempt %d of %d: %s (status=%s, request_id=%s); retrying in %.2f s",
            request.label or request.model,
            state.attempt_number,
            self._settings.max_retries + 1,
            self._redact(f"{label} - {detail}" if detail else label),
            status,
            request_id,
            state.upcoming_sleep,
        )

    def _final_error(self, exc: APIError, failures: list[BaseException], request: CompletionRequest) -> ModelError:
        attempts = max(len(failures), 1)
        labels = [_label(f, self._settings.request_timeout_s) for f in failures] or [_label(exc, 0)]
        if len(set(labels)) == 1:
            tried = f"{labels[0]} on {'all ' if attempts > 1 else ''}{attempts} attempt{'s' if attempts > 1 else ''}"
        else:
            tried = f"failed on all {attempts} attempts ({', '.join(labels)})"
        status = exc.status_code if isinstance(exc, APIStatusError) else None
        request_id = exc.request_id if isinstance(exc, APIStatusError) else None
        error_class: type[ModelError]
        if isinstance(exc, APIStatusError) and not is_transient_status(exc.status_code):
            error_class = ModelRequestError
            message = f"Anthropic API rejected the request ({exc.status_code} {_detail(exc, sep=')')}"
            message += f" (after {attempts} attempts)" if attempts > 1 else ""
        elif isinstance(exc, APIStatusError):
            error_class = ModelUnavailableError
            advice = "lower max_concurrency or try again later" if exc.status_code == 429 else "try again later"
            message = f"Anthropic API unavailable: {tried}; last error: {_detail(exc)}; {advice}"
        elif isinstance(exc, APITimeoutError):
            error_class = ModelTimeoutError
            message = (
                f"Anthropic API timed out: {tried}; raise SUBAGENT_MCP_REQUEST_TIMEOUT_S "
                f"or lower max_tokens if replies are long"
            )
        elif isinstance(exc, APIConnectionError):
            error_class = ModelUnavailableError
            message = f"Anthropic API unreachable: {tried}; check ANTHROPIC_BASE_URL and the network"
        else:
            error_class = ModelRequestError
            message = f"Anthropic API call failed: {exc.message}"
        return error_class(
            self._redact(message), attempts=attempts, model=request.model, status_code=status, request_id=request_id
        )

    def _redact(self, text: str) -> str:
        """``text`` without the key in any form it can take (as sent, repr- or bytes-escaped)."""
        return self._client.redact(text)


def message_params(request: CompletionRequest) -> MessageCreateParamsNonStreaming:
    """The Messages API parameters ``complete`` sends for ``request``: what a Message Batches request carries.

    Raises:
        InputError: the output schema cannot be sent to the API.
    """
    try:
        schema = transform_schema(request.output_schema)
    except (ValueError, TypeError) as exc:
        raise InputError(f"the output schema cannot be sent to the Anthropic API: {exc}") from None
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
        params["tools"] = tool_params(request.server_tools)
    return params


def completion_of(message: Message) -> Completion:
    """Our ``Completion`` of one message a batch returned (one attempt), checked like a live reply.

    Raises:
        UnusableReplyError: the message is malformed or reports impossible usage.
    """
    return _completion(message, attempts=1)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, APIStatusError):
        return is_transient_status(exc.status_code, exc.response.headers.get("x-should-retry"))
    return isinstance(exc, APIConnectionError)  # APITimeoutError included


def _detail(exc: APIStatusError, sep: str = "") -> str:
    """``<error type><sep>: <the API's message>``, falling back to the raw body for non-JSON errors."""
    text = exc.api_message or (str(exc.body)[:300] if exc.body else exc.response.reason_phrase)
    return f"{exc.type or 'error'}{sep}: {text}"


def _retry_headers(exc: BaseException) -> Mapping[str, str] | None:
    return exc.response.headers if isinstance(exc, APIStatusError) else None


def _label(exc: BaseException, timeout_s: float) -> str:
    """A few words for one failed attempt, e.g. ``rate limited (429)``."""
    if isinstance(exc, APITimeoutError):
        return f"no response within {timeout_s:g} s"
    if isinstance(exc, APIStatusError):
        words = _STATUS_WORDS.get(exc.status_code, "server error" if exc.status_code >= 500 else "HTTP error")
        return f"{words} ({exc.status_code})"
    if isinstance(exc, APIConnectionError):
        cause = exc.__cause__
        return f"connection failed ({cause})" if cause is not None and str(cause) else "connection failed"
    return type(exc).__name__


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


def _completion(message: Message, *, attempts: int) -> Completion:
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
