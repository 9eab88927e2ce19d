"""The Anthropic Messages API backend; it and the ``anthropic_*`` and ``http_guard`` modules alone import ``anthropic``.

One retry layer (tenacity; the SDK client gets ``max_retries=0``), native structured outputs via
``output_config.format``, a deadline on each whole attempt, replies capped in size and checked for
impossible usage, and every final failure mapped to a ``ModelError`` whose message says what
happened and never contains the API key. Validation and repair turns live above this seam.
A role's server tools (web search, ...) run inside the call; a ``pause_turn`` is continued, not answered.
Given the service's gate (``use_gate``), each attempt holds a slot only while it is on the wire and
reports 429/529 to it, so a retry waits without a slot and the whole pool slows down together.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import cast

import anyio
import httpx2
from anthropic import APIConnectionError, APIError, APIStatusError, APITimeoutError, AsyncAnthropic
from anthropic.types import Message, MessageParam
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..contracts import Completion, CompletionRequest, Usage
from ..core.context import estimate_tokens
from ..errors import (
    ModelError,
    ModelReplyError,
    ModelRequestError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from ..settings import Settings
from .anthropic_client import LazyClient
from .anthropic_messages import completion_of, message_params
from .anthropic_tools import assistant_content
from .base import continuation_check
from .http_guard import UnusableReplyError
from .limited import OVERLOAD_STATUSES, AdaptiveLimiter, GatedCall
from .retry import Sleep, WaitRetryAfterOrBackoff, is_transient_status, retry_after_s

logger = logging.getLogger(__name__)

MAX_CONTINUATIONS = 5
"""Most times a ``pause_turn`` reply is sent back to be continued before the call fails."""

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
        params = message_params(request)
        async with self._gate.call() as call:
            return await self._converse(client, request, params, call)

    async def _converse(
        self,
        client: AsyncAnthropic,
        request: CompletionRequest,
        params: MessageCreateParamsNonStreaming,
        call: GatedCall,
    ) -> Completion:
        """Send the request, continuing a ``pause_turn`` (a long server-tool turn) up to ``MAX_CONTINUATIONS`` times.

        The reply is the last message's; its usage and attempts are those of every message sent.
        """
        spent, attempts, resent = Usage(), 0, list[MessageParam]()
        for turn in range(MAX_CONTINUATIONS + 1):
            try:
                message, completion = await self._send(client, request, params, call)
            except ModelError as exc:
                exc.usage, exc.attempts = spent + exc.usage, attempts + exc.attempts
                raise
            spent, attempts = spent + completion.usage, attempts + completion.attempts
            if completion.stop_reason != "pause_turn":
                return completion.model_copy(update={"usage": spent, "attempts": attempts})
            if turn < MAX_CONTINUATIONS:  # the API resumes the turn from its own paused content
                try:
                    paused = assistant_content(message)
                except (AttributeError, TypeError) as exc:  # the SDK does not validate replies: a block may be junk
                    raise ModelReplyError(
                        f"the API paused the turn (pause_turn) with content that cannot be sent back "
                        f"({type(exc).__name__}); it was not continued",
                        usage=spent,
                        attempts=attempts,
                        model=request.model,
                    ) from None
                resent.append({"role": "assistant", "content": paused})
                params = params.copy()
                params["messages"] = [*params["messages"], resent[-1]]
                added = estimate_tokens(json.dumps(resent, default=str))  # what the next prompt holds beyond the first
                await _may_continue(completion, added, spent, attempts, request.model)
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
        params: MessageCreateParamsNonStreaming,
        call: GatedCall,
    ) -> tuple[Message, Completion]:
        failures: list[BaseException] = []

        async def attempt() -> tuple[Message, Completion]:
            async with call.attempt() as slot:  # held on the wire only, not while a retry waits
                try:
                    # httpx's timeouts bound each read, not the request: a reply trickling in a byte at a
                    # time would never end. The deadline covers the whole attempt, body included.
                    with anyio.fail_after(self._settings.request_timeout_s):
                        message = await client.messages.create(**params)
                    completion = self._client.redact_reply(completion_of(message, attempts=len(failures) + 1))
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
            if exc.status_code == 401:  # most often a key pasted with quotes, cut short, or from another workspace
                message += "; check ANTHROPIC_API_KEY in the server's environment (no quotes around it)"
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


async def _may_continue(paused: Completion, added_tokens: int, spent: Usage, attempts: int, model: str) -> None:
    """Ask the budget around this call, if any, whether the next message of a continued turn may go."""
    check = continuation_check.get()
    if check is None:
        return
    try:
        await check(paused, added_tokens)
    except ModelError as exc:  # what the turn spent so far belongs to the error, as it does to a failed send
        exc.usage, exc.attempts, exc.model = spent + exc.usage, attempts + exc.attempts, exc.model or model
        raise


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
