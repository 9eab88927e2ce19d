"""The Message Batches API adapter: submit requests as one batch, poll it, read its results, cancel it.

Like ``anthropic.py``, the one place this part of the API is touched: the SDK client gets
``max_retries=0`` and transient failures of each call are retried here (bounded); every failure
becomes a ``ModelError`` whose text never holds the key. Results are read line by line from the
JSONL file and each line is validated: a line that is not a result is a ``ModelReplyError`` for the
whole batch, never a crash. A succeeded message passes the same checks as a live reply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import anyio
import httpx2
from anthropic import APIConnectionError, APIError, APIStatusError
from anthropic.types.messages import MessageBatchIndividualResponse
from anthropic.types.messages.batch_create_params import Request
from pydantic import ValidationError

from ..contracts import Completion, CompletionRequest
from ..errors import ModelError, ModelReplyError, ModelRequestError, ModelUnavailableError
from ..settings import Settings
from .anthropic_client import LazyClient
from .anthropic_messages import completion_of, message_params
from .http_guard import UnusableReplyError
from .retry import is_transient_status

_UNUSABLE_IN_ID = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
"""A control character (a NUL, which PostgreSQL cannot store, among them) or a lone surrogate."""

MAX_RESULTS_BYTES = 256 * 1024 * 1024
"""Largest results file read: the API's own cap on a batch's size."""

T = TypeVar("T")

Outcome = Completion | ModelError
"""One request's end: its reply, or why it has none."""


class AnthropicBatches:
    """Message Batches over ``AsyncAnthropic``; the client is built on first use, never at import."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = LazyClient(settings, MAX_RESULTS_BYTES)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def submit(self, requests: Sequence[tuple[str, CompletionRequest]]) -> str:
        """Send ``(custom_id, request)`` pairs as one batch; returns its id.

        Raises:
            ModelError: the API refused the batch, or stayed unavailable through every retry.
            InputError: a request's schema cannot be sent.
        """
        body: list[Request] = [{"custom_id": cid, "params": message_params(r)} for cid, r in requests]
        client = self._client.get()
        batch = await self._call("create a batch", lambda: client.messages.batches.create(requests=body))
        batch_id: object = getattr(batch, "id", None)  # the SDK does not validate replies; stored, and sent in URLs
        if not isinstance(batch_id, str) or not batch_id or _UNUSABLE_IN_ID.search(batch_id):
            raise ModelReplyError(
                f"the Message Batches API named its new batch {str(batch_id)[:100]!r}, which is not a batch id; it "
                "cannot be stored, followed or cancelled, so its requests failed here (resume_run sends them again)"
            )
        return batch_id

    async def ended(self, batch_id: str) -> bool:
        """Whether the batch has ended (every request succeeded, errored, expired or was canceled)."""
        client = self._client.get()
        batch = await self._call(f"poll batch {batch_id}", lambda: client.messages.batches.retrieve(batch_id))
        return batch.processing_status == "ended"

    async def cancel(self, batch_id: str) -> None:
        """Ask the API to cancel the batch (requests already processed are still billed)."""
        client = self._client.get()
        await self._call(f"cancel batch {batch_id}", lambda: client.messages.batches.cancel(batch_id))

    async def results(self, batch_id: str, expected: Mapping[str, str | None]) -> dict[str, Outcome]:
        """Each request's outcome by custom_id (``expected``: every custom_id of the batch -> its model if known).

        Raises:
            ModelReplyError: the results file is not JSON Lines of results; nothing of it is used.
            ModelError: the file could not be fetched or read whole (ModelUnavailableError: try again later).
        """
        client = self._client.get()
        decoder = await self._call(
            f"fetch the results of batch {batch_id}", lambda: client.messages.batches.results(batch_id)
        )
        outcomes: dict[str, Outcome] = {}
        number = 0
        try:
            with anyio.fail_after(self._settings.request_timeout_s):  # a body that trickles in never ends
                async for line in decoder.http_response.aiter_lines():
                    number += 1
                    if line.strip():
                        custom_id, outcome = _outcome(line, expected, self._client)
                        outcomes[custom_id] = outcome
        except (TimeoutError, httpx2.HTTPError) as exc:  # the transfer broke: the results are still there
            why = "took too long" if isinstance(exc, TimeoutError) else f"broke off ({type(exc).__name__})"
            message = f"reading the results of batch {batch_id} {why}; resume_run reads them again"
            raise ModelUnavailableError(message) from None
        except (ValueError, ValidationError) as exc:
            raise ModelReplyError(
                self._redact(
                    f"the Message Batches API sent a results file for batch {batch_id} whose line {number} is not a "
                    f"result ({_short(exc)}); none of its results were used"
                )
            ) from None
        except (APIError, UnusableReplyError) as exc:
            raise ModelReplyError(self._redact(f"reading the results of batch {batch_id} failed: {exc}")) from None
        finally:
            await decoder.close()
        return outcomes

    async def _call(self, what: str, send: Callable[[], Awaitable[T]]) -> T:
        """``send()``, retrying transient failures ``max_retries`` times with a capped backoff."""
        attempts = self._settings.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                with anyio.fail_after(self._settings.request_timeout_s):
                    return await send()
            except (APIStatusError, APIConnectionError, TimeoutError) as exc:
                transient = not isinstance(exc, APIStatusError) or is_transient_status(exc.status_code)
                if not transient or attempt == attempts:
                    raise self._error(what, exc, attempt) from None
                await anyio.sleep(min(2.0 ** (attempt - 1), self._settings.retry_max_wait_s))
            except (APIError, UnusableReplyError) as exc:
                raise ModelReplyError(self._redact(f"Anthropic API: could not {what}: {exc}")) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, what: str, exc: Exception, attempts: int) -> ModelError:
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        if isinstance(exc, APIStatusError):
            text = self._redact(f"Anthropic API: could not {what}: {exc.status_code} {exc.message}{tried}")
            kind = ModelUnavailableError if is_transient_status(exc.status_code) else ModelRequestError
            return kind(text, attempts=attempts, status_code=exc.status_code, request_id=exc.request_id)
        why = "no response in time" if isinstance(exc, TimeoutError) else "unreachable"
        return ModelUnavailableError(f"Anthropic API: could not {what}: {why}{tried}", attempts=attempts)

    def _redact(self, text: str) -> str:
        return self._client.redact(text)


def _outcome(line: str, expected: Mapping[str, str | None], client: LazyClient) -> tuple[str, Outcome]:
    """One results line as (custom_id, outcome), the key redacted from what the API wrote in it.

    Raises ``ValueError``/``ValidationError`` if the line is not a result.
    """
    item = MessageBatchIndividualResponse.model_validate(json.loads(line))
    if item.custom_id not in expected:
        raise ValueError(f"it names a request the batch does not have ({item.custom_id[:64]!r})")
    model = expected[item.custom_id]  # None: a model error's callers fall back to their request's model
    result = item.result
    if result.type == "succeeded":
        try:
            completion = client.redact_reply(completion_of(result.message))
        except UnusableReplyError as exc:
            return item.custom_id, ModelReplyError(client.redact(f"the batch's reply was refused: {exc}"), model=model)
        if completion.stop_reason == "pause_turn":
            return item.custom_id, ModelReplyError(
                "the model paused its turn (pause_turn) in a batch, which cannot be continued there; "
                "run this subtask without batch mode",
                usage=completion.usage,
                model=model,
            )
        return item.custom_id, completion
    if result.type == "errored":
        error = result.error.error
        kind = ModelRequestError if error.type == "invalid_request_error" else ModelUnavailableError
        return item.custom_id, kind(
            client.redact(f"the batch request errored ({error.type}: {error.message}); resume_run sends it again"),
            model=model,
        )
    why = (
        "expired before the API processed it (a batch ends within 24 h)" if result.type == "expired" else "was canceled"
    )
    return item.custom_id, ModelUnavailableError(f"the batch request {why}; resume_run sends it again", model=model)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
