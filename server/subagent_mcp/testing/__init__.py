"""Test machinery shipped with the package: a fake Messages API and result helpers."""

from .exchange import (
    FakeReply,
    FakeRequest,
    Handler,
    cut_off_reply,
    disconnect_reply,
    error_reply,
    hang_reply,
    json_reply,
    oversized_reply,
    refusal_reply,
    text_reply,
    trickle_reply,
)
from .fake_anthropic import FakeAnthropic, serve_fake_anthropic
from .search_replies import fetched_reply, paused_fetch_reply, paused_reply, searched_reply

__all__ = [
    "FakeAnthropic",
    "FakeReply",
    "FakeRequest",
    "Handler",
    "cut_off_reply",
    "disconnect_reply",
    "error_reply",
    "fetched_reply",
    "hang_reply",
    "json_reply",
    "oversized_reply",
    "paused_fetch_reply",
    "paused_reply",
    "refusal_reply",
    "searched_reply",
    "serve_fake_anthropic",
    "text_reply",
    "trickle_reply",
]
