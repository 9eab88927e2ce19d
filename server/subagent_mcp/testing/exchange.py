"""What passes through the fake Messages API: the request it saw, the reply it gives, and helpers to script replies."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..contracts import JsonObject, Usage
from ..prompts import subtask_id_of
from ._http11 import reason_phrase

Action = Literal["answer", "hang", "disconnect", "cut_off", "trickle"]


@dataclass(frozen=True)
class FakeRequest:
    """One HTTP request as the fake received it; ``headers`` have lower-case names.

    ``index`` counts requests and ``connection`` TCP connections, both from 0 in arrival order.
    """

    index: int
    connection: int
    method: str
    path: str
    headers: Mapping[str, str]
    body: JsonObject

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def system_text(self) -> str:
        system: Any = self.body.get("system", "")
        return system if isinstance(system, str) else "\n".join(_block_texts(system))

    @property
    def user_text(self) -> str:
        """The text of the last user turn (the one the model answers), its blocks joined as sent."""
        users = [m for m in self.body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            return ""
        content: Any = users[-1].get("content", "")
        return content if isinstance(content, str) else "".join(_block_texts(content))

    @property
    def first_user_text(self) -> str:
        """The text of the first user turn: a subtask's prompt, also in its repair turn."""
        messages = self.body.get("messages", [])
        content: Any = messages[0].get("content", "") if messages and isinstance(messages[0], dict) else ""
        return content if isinstance(content, str) else "".join(_block_texts(content))

    @property
    def subtask_id(self) -> str:
        """The id of the subtask this request is for, from its prompt (``prompts.subtask_id_of``)."""
        return subtask_id_of(self.first_user_text)

    @property
    def schema(self) -> JsonObject | None:
        """``output_config.format.schema``, or None when the request asked for free text."""
        schema = self.body.get("output_config", {}).get("format", {}).get("schema")
        return schema if isinstance(schema, dict) else None

    @property
    def api_key(self) -> str | None:
        """The key from ``Authorization: Bearer`` (what anthropic 2.x sends) or ``x-api-key``."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return self.headers.get("x-api-key")


@dataclass(frozen=True)
class FakeReply:
    """What the fake does with one request: answer, hang, drop the connection, cut the body short, or trickle it.

    ``size`` pads the body with leading spaces to that many bytes (``gzip`` compresses it), and
    ``raw_usage`` is sent as the message's usage verbatim, to script what no real API should send.
    Without ``usage`` the fake bills the prompt itself (``_billing``) and ``output_tokens``, else text / 4.
    """

    status: int = 200
    text: str = ""
    stop_reason: str | None = "end_turn"
    stop_details: JsonObject | None = None
    usage: Usage | None = None
    error_message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    delay_s: float = 0.0
    action: Action = "answer"
    every_s: float = 0.0
    size: int = 0
    gzip: bool = False
    raw_usage: JsonObject | None = None
    output_tokens: int | None = None
    blocks: tuple[JsonObject, ...] = ()
    """Content blocks sent before the text (server_tool_use and results, ``_server_tools``); they set the counts."""
    model: str | None = None
    """The model the message names; None echoes the request's (a real API names the one that answered)."""

    def after(self, delay_s: float) -> FakeReply:
        """The same reply, sent ``delay_s`` seconds after the request arrives."""
        return replace(self, delay_s=delay_s)


Handler = Callable[[FakeRequest], "FakeReply | Awaitable[FakeReply]"]


def text_reply(text: str, *, stop_reason: str = "end_turn", usage: Usage | None = None) -> FakeReply:
    """A 200 message whose only text block is ``text`` (e.g. ``stop_reason="max_tokens"`` for a cut-off)."""
    return FakeReply(text=text, stop_reason=stop_reason, usage=usage)


def json_reply(obj: Any, *, usage: Usage | None = None) -> FakeReply:
    """A 200 message whose text is ``obj`` as JSON."""
    return text_reply(json.dumps(obj), usage=usage)


def refusal_reply(
    explanation: str = "I can't help with that.", *, category: str | None = "general_harms", text: str = ""
) -> FakeReply:
    """A 200 message with ``stop_reason="refusal"`` and ``stop_details`` as the API sends them."""
    details = {"type": "refusal", "category": category, "explanation": explanation}
    return FakeReply(text=text, stop_reason="refusal", stop_details=details)


def error_reply(
    status: int,
    message: str = "",
    *,
    retry_after: str | float | None = None,
    retry_after_ms: float | None = None,
    should_retry: bool | None = None,
    headers: Mapping[str, str] | None = None,
) -> FakeReply:
    """An error response in the API's shape, with optional retry headers."""
    extra = dict(headers or {})
    if retry_after is not None:
        extra["retry-after"] = str(retry_after)
    if retry_after_ms is not None:
        extra["retry-after-ms"] = str(retry_after_ms)
    if should_retry is not None:
        extra["x-should-retry"] = "true" if should_retry else "false"
    return FakeReply(status=status, error_message=message or reason_phrase(status), headers=extra)


def hang_reply() -> FakeReply:
    """Never answer; the connection stays open until the client gives up."""
    return FakeReply(action="hang")


def disconnect_reply() -> FakeReply:
    """Close the connection without sending a response."""
    return FakeReply(action="disconnect")


def trickle_reply(every_s: float = 0.05) -> FakeReply:
    """Send the head, then one byte of body every ``every_s`` seconds, never finishing, until the client hangs up."""
    return FakeReply(action="trickle", every_s=every_s)


def oversized_reply(size: int, *, gzip: bool = False, obj: Any = None) -> FakeReply:
    """A valid message padded to a ``size``-byte body; with ``gzip`` the bytes on the wire are a thousandth of it."""
    return FakeReply(text=json.dumps(obj if obj is not None else {"answer": "big"}), size=size, gzip=gzip)


def cut_off_reply(obj: Any = None) -> FakeReply:
    """Send the headers and half of a message body (Content-Length promises all of it), then close."""
    return FakeReply(text=json.dumps(obj if obj is not None else {"cut": "off"}), action="cut_off")


def _block_texts(blocks: Any) -> list[str]:
    """The text of a message's text blocks, in order."""
    return [str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
