"""Scripted replies of a model that used server tools: searches or fetches before the answer, or a paused turn."""

from __future__ import annotations

import json
from typing import Any

from ._server_tools import fetch_blocks, search_blocks
from .exchange import FakeReply


def searched_reply(obj: Any, *, searches: int = 1, query: str = "fake query") -> FakeReply:
    """A 200 message whose model searched ``searches`` times, then answered ``obj`` as JSON."""
    return FakeReply(text=json.dumps(obj), blocks=search_blocks(query, searches))


def paused_reply(*, searches: int = 1, query: str = "fake query") -> FakeReply:
    """A ``pause_turn`` message: ``searches`` searches done, no answer yet; the client must continue the turn."""
    return FakeReply(stop_reason="pause_turn", blocks=search_blocks(query, searches))


def fetched_reply(obj: Any, *, fetches: int = 1, tokens: int = 2_500, pdf: bool = False) -> FakeReply:
    """A 200 message whose model fetched ``fetches`` pages of ``tokens`` tokens each, then answered ``obj``.

    The fake cuts each text page to the request's ``max_content_tokens`` (not a ``pdf``) and bills what was
    fetched as input tokens, as the API does.
    """
    return FakeReply(text=json.dumps(obj), blocks=fetch_blocks(tokens, fetches, pdf=pdf))


def paused_fetch_reply(*, fetches: int = 1, tokens: int = 2_500, start: int = 0) -> FakeReply:
    """A ``pause_turn`` message after ``fetches`` fetches of ``tokens``-token pages: continued, they are read again."""
    return FakeReply(stop_reason="pause_turn", blocks=fetch_blocks(tokens, fetches, start=start))
