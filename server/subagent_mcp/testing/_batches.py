"""The fake Message Batches API: create, retrieve, results (JSONL) and cancel, on the fake Messages API's socket.

A batch's requests are answered by the fake's own scripted replies (queue, handler, default) and billed
like messages, but at ``BATCH_PRICE_FACTOR`` of the price: ``billed`` keeps each one's usage and model.
A batch is processed when it is first retrieved while not held: ``hold()`` keeps every batch
``in_progress`` until ``release()`` (a server can be stopped and restarted meanwhile), so no test waits on time.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio

from ..contracts import JsonObject, Usage
from ..core.pricing import ModelPrice, cost_usd
from .exchange import FakeReply, FakeRequest

BATCH_PRICE_FACTOR = 0.5
"""What the Message Batches API bills against the Messages API: half, for every kind of token (not per-use fees)."""

BatchStatus = Literal["in_progress", "canceling", "ended"]
Answer = Callable[[FakeRequest], Awaitable[tuple[FakeReply, JsonObject | None, Usage | None]]]
"""Answers one message request as ``/v1/messages`` would: the reply, its message body and usage (if billed)."""

PREFIX = "/v1/messages/batches"


@dataclass
class FakeBatch:
    """One created batch: its requests by custom_id, status, and once ended, each request's result line."""

    batch_id: str
    requests: dict[str, JsonObject]
    created_at: datetime
    status: BatchStatus = "in_progress"
    results: dict[str, JsonObject] = field(default_factory=dict[str, JsonObject])
    cancel_asked: bool = False


@dataclass
class FakeBatches:
    """The batches one fake API holds; ``created`` lists every batch created, in order."""

    answer: Answer
    batches: dict[str, FakeBatch] = field(default_factory=dict[str, FakeBatch])
    billed: list[tuple[str, Usage]] = field(default_factory=list[tuple[str, Usage]])
    """(model, usage) of every batch request answered, billed at ``BATCH_PRICE_FACTOR``."""
    held: bool = False
    corrupt_results: bool = False
    """Send a results file with a line that is not JSON (what a broken upstream might do)."""
    outcomes: dict[str, Literal["errored", "expired", "canceled"]] = field(
        default_factory=dict[str, Literal["errored", "expired", "canceled"]]
    )
    """Subtask ids whose batch requests end this way instead of being answered (see ``FakeRequest.subtask_id``)."""
    failing_polls: int = 0
    """Answer this many batch retrievals 500, as an API having a bad minute would."""
    next_ids: list[str] = field(default_factory=list[str])
    """Ids the next batches created get, in order (then ``msgbatch_fake_NNNN``): what a broken upstream might name."""
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def created(self) -> list[FakeBatch]:
        return list(self.batches.values())

    def hold(self) -> None:
        """Keep every batch ``in_progress`` until ``release``."""
        self.held = True

    def release(self) -> None:
        self.held = False

    async def wait_created(self, count: int) -> None:
        """Return once ``count`` batches were created."""
        while len(self.batches) < count:
            await self.changed.wait()

    def billed_usd(self, prices: Mapping[str, ModelPrice]) -> float:
        """What the batch requests cost: tokens at ``BATCH_PRICE_FACTOR`` of the Messages price, searches in full."""
        total = 0.0
        for model, u in self.billed:
            searches = Usage(web_search_requests=u.web_search_requests)
            tokens = u.model_copy(update={"web_search_requests": 0, "web_fetch_requests": 0})
            total += cost_usd(tokens, model, prices) * BATCH_PRICE_FACTOR + cost_usd(searches, model, prices)
        return round(total, 8)

    @property
    def billed_usage(self) -> Usage:
        return sum((u for _, u in self.billed), Usage())

    async def respond(self, request: FakeRequest, base_url: str, api_key: str | None) -> tuple[int, bytes]:
        """The status and body for a request under ``/v1/messages/batches`` (``api_key``: the one accepted)."""
        if not request.api_key or (api_key is not None and request.api_key != api_key):
            return 401, _json({"type": "error", "error": {"type": "authentication_error", "message": "invalid key"}})
        parts = request.path[len(PREFIX) :].strip("/").split("/")
        if request.method == "POST" and parts == [""]:
            return self._create(request)
        batch = self.batches.get(parts[0])
        if batch is None:
            return _error(404, f"no batch {parts[0]!r}")
        if request.method == "GET" and len(parts) == 1 and self.failing_polls > 0:
            self.failing_polls -= 1
            return 500, _json({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
        if request.method == "GET" and len(parts) == 1:
            if batch.status != "ended" and not self.held:
                await self._process(batch, request)
            return 200, _json(_batch_object(batch, base_url))
        if request.method == "GET" and parts[1:] == ["results"]:
            if batch.status != "ended":
                return _error(400, "the batch has not ended; its results are not ready")
            return 200, self._results(batch)
        if request.method == "POST" and parts[1:] == ["cancel"]:
            batch.cancel_asked = True
            if batch.status == "in_progress":
                batch.status = "canceling"
                for custom_id in batch.requests:
                    batch.results[custom_id] = {"type": "canceled"}
                batch.status = "ended"
            return 200, _json(_batch_object(batch, base_url))
        return _error(404, f"{request.method} {request.path} is not served by the fake Message Batches API")

    def _create(self, request: FakeRequest) -> tuple[int, bytes]:
        raw: Any = request.body.get("requests")
        if not isinstance(raw, list) or not raw:
            return _error(400, "requests: a non-empty list is required")
        requests: dict[str, JsonObject] = {}
        for item in raw:  # pyright: ignore[reportUnknownVariableType] - the body is the client's JSON, checked here
            if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):  # pyright: ignore
                return _error(400, "each request needs a custom_id and params")
            params: Any = item.get("params")  # pyright: ignore[reportUnknownMemberType]
            custom_id: str = item["custom_id"]  # pyright: ignore[reportUnknownVariableType]
            if not isinstance(params, dict) or custom_id in requests:
                return _error(400, f"request {custom_id!r}: params missing, or custom_id not unique")
            requests[custom_id] = params  # pyright: ignore[reportUnknownArgumentType]
        batch_id = self.next_ids.pop(0) if self.next_ids else f"msgbatch_fake_{len(self.batches) + 1:04d}"
        batch = FakeBatch(batch_id, requests, datetime.now(UTC))
        self.batches[batch_id] = batch
        self.changed.set()
        self.changed = anyio.Event()
        return 200, _json(_batch_object(batch, ""))

    async def _process(self, batch: FakeBatch, via: FakeRequest) -> None:
        """Answer every request of ``batch`` through the fake's scripted replies, then end it."""
        for custom_id, params in batch.requests.items():
            message = FakeRequest(via.index, via.connection, "POST", "/v1/messages", via.headers, params)
            outcome = self.outcomes.get(_subtask_of(message)) if self.outcomes else None
            if outcome is not None:
                batch.results[custom_id] = _failed(outcome)
                continue
            reply, body, usage = await self.answer(message)
            if body is None or usage is None:
                batch.results[custom_id] = _failed("errored", reply)
                continue
            self.billed.append((message.model, usage))
            batch.results[custom_id] = {"type": "succeeded", "message": body}
        batch.status = "ended"

    def _results(self, batch: FakeBatch) -> bytes:
        lines = [json.dumps({"custom_id": c, "result": r}) for c, r in batch.results.items()]
        if self.corrupt_results:
            lines.insert(len(lines) // 2, '{"custom_id": "x", "result": {"type": "succ')
        return ("\n".join(lines) + "\n").encode()


def _subtask_of(message: FakeRequest) -> str:
    """The subtask a request is for, or "" for one that is not a subtask's (a hand-written request)."""
    try:
        return message.subtask_id
    except ValueError:
        return ""


def _failed(kind: str, reply: FakeReply | None = None) -> JsonObject:
    if kind != "errored":
        return {"type": kind}
    status = reply.status if reply is not None else 500
    error_type = "invalid_request_error" if 400 <= status < 500 else "api_error"
    message = (reply.error_message if reply is not None else "") or "the request failed"
    return {"type": "errored", "error": {"type": "error", "error": {"type": error_type, "message": message}}}


def _batch_object(batch: FakeBatch, base_url: str) -> JsonObject:
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if batch.status == "ended":
        for result in batch.results.values():
            counts[str(result["type"])] += 1
    else:
        counts["processing"] = len(batch.requests)
    ended = batch.status == "ended"
    return {
        "id": batch.batch_id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": counts,
        "created_at": batch.created_at.isoformat(),
        "expires_at": (batch.created_at + timedelta(hours=24)).isoformat(),
        "ended_at": datetime.now(UTC).isoformat() if ended else None,
        "cancel_initiated_at": datetime.now(UTC).isoformat() if batch.cancel_asked else None,
        "archived_at": None,
        "results_url": f"{base_url}{PREFIX}/{batch.batch_id}/results" if ended else None,
    }


def _json(obj: JsonObject) -> bytes:
    return json.dumps(obj).encode()


def _error(status: int, message: str) -> tuple[int, bytes]:
    error_type = "not_found_error" if status == 404 else "invalid_request_error"
    return status, _json({"type": "error", "error": {"type": error_type, "message": message}})
