"""Prompt caching rules shared by the request builder, the estimate, the budget and the fake API (pure, no I/O).

A request marks where its shared prefix ends (``cache_control`` on a block); the API caches the prefix
up to each mark, if it is at least the model's minimum length, and later requests with the same
prefix read it at 0.1x the input price. A write costs 1.25x (5-minute TTL) or 2x (1-hour TTL).
"""

from __future__ import annotations

import json
import math
from typing import Literal

from ..contracts import CacheMarks, CompletionRequest

CacheTtl = Literal["5m", "1h"]

MIN_CACHEABLE_TOKENS: dict[str, int] = {
    # Longest matching prefix wins. From Anthropic's prompt-caching docs as quoted in 2026 (Opus 5 512;
    # Sonnet 5, Opus 4.8, Sonnet 4.x, Opus 4/4.1 1,024; Opus 4.7 2,048; Opus 4.5/4.6, Haiku 4.5 4,096).
    # No figure was found for Haiku 5.x: 2,048, the Haiku figure of earlier generations, is assumed.
    "claude-opus-5": 512,
    "claude-fable-5": 512,
    "claude-mythos-5": 512,
    "claude-sonnet-5": 1024,
    "claude-haiku-5": 2048,
    "claude-opus-4-8": 1024,
    "claude-opus-4-7": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-sonnet-4": 1024,
    "claude-opus-4": 1024,
}
"""The shortest prefix, in tokens, each model caches; a breakpoint on a shorter prefix is ignored by the API."""

DEFAULT_MIN_CACHEABLE_TOKENS = 1024
"""For a model the table does not know."""

WRITE_MULTIPLIER: dict[CacheTtl, float] = {"5m": 1.25, "1h": 2.0}
"""A cache write's price as a multiple of the input price, by TTL."""

READ_MULTIPLIER = 0.1
"""A cache read's price as a multiple of the input price."""

MAX_BREAKPOINTS = 4
"""The API refuses a request with more ``cache_control`` blocks than this."""


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix ``model`` caches: an exact id, else the longest table key that prefixes it."""
    if model in MIN_CACHEABLE_TOKENS:
        return MIN_CACHEABLE_TOKENS[model]
    matches = [key for key in MIN_CACHEABLE_TOKENS if model.startswith(key)]
    return MIN_CACHEABLE_TOKENS[max(matches, key=len)] if matches else DEFAULT_MIN_CACHEABLE_TOKENS


def prefix_tokens(text: str) -> int:
    """A low estimate of ``text``'s tokens (4 characters a token), so a prefix judged long enough is."""
    return math.floor(len(text) / 4)


def marks_for(model: str, system_and_schema: str, shared: str, ttl: CacheTtl, *, reused: bool) -> CacheMarks | None:
    """Where to mark a request whose prompt starts ``system_and_schema`` then ``shared`` (the first user turn's head).

    Nothing is marked unless another request of the run will repeat the prefix (``reused``), and no
    mark is put on a prefix shorter than the model's minimum: the write would cost 1.25x for nothing.
    """
    if not reused:
        return None
    minimum = min_cacheable_tokens(model)
    system = prefix_tokens(system_and_schema) >= minimum
    through_shared = bool(shared) and prefix_tokens(system_and_schema + shared) >= minimum
    if not (system or through_shared):
        return None
    return CacheMarks(system=system, first_user_chars=len(shared) if through_shared else 0, ttl=ttl)


def cached_prefix(request: CompletionRequest) -> str:
    """The prompt text up to ``request``'s last cache mark (schema, system, shared head), or "" with no mark.

    What a call may bill at the cache-write price; two requests with the same prefix and model share it.
    """
    marks = request.cache
    if marks is None:
        return ""
    head = json.dumps(request.output_schema) + request.system
    if marks.first_user_chars and request.messages:
        return head + request.messages[0].content[: marks.first_user_chars]
    return head if marks.system else ""
