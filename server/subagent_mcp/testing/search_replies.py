"""Scripted replies of a model that used server tools: searches before the answer, or a turn paused mid-search."""

from __future__ import annotations

import json
from typing import Any

from ._server_tools import search_blocks
from .exchange import FakeReply


def searched_reply(obj: Any, *, searches: int = 1, query: str = "fake query") -> FakeReply:
    """A 200 message whose model searched ``searches`` times, then answered ``obj`` as JSON."""
    return FakeReply(text=json.dumps(obj), blocks=search_blocks(query, searches))


def paused_reply(*, searches: int = 1, query: str = "fake query") -> FakeReply:
    """A ``pause_turn`` message: ``searches`` searches done, no answer yet; the client must continue the turn."""
    return FakeReply(stop_reason="pause_turn", blocks=search_blocks(query, searches))
