"""The retry policy's pieces that need no SDK: which statuses heal, and how long to wait.

Mirrors the split anthropic's ``_base_client`` makes (``x-should-retry`` first, then 408, 409, 429
and 5xx; ``retry-after-ms``, then ``retry-after``, else jittered exponential backoff), with every
wait capped so one overloaded minute cannot stall a run.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping

from tenacity import RetryCallState
from tenacity.wait import wait_base

Sleep = Callable[[float], Awaitable[None]]
"""An async sleep; tests pass one that records the delay and returns at once."""

TRANSIENT_STATUSES = frozenset({408, 409, 429})
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


def is_transient_status(status: int, should_retry_header: str | None = None) -> bool:
    """Whether a response with ``status`` is worth sending again; ``x-should-retry`` overrides the status."""
    if should_retry_header == "true":
        return True
    if should_retry_header == "false":
        return False
    return status in TRANSIENT_STATUSES or status >= 500


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait the server asked for: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date).

    A header that is not a finite number or a date ``time`` can hold (year 99999) counts as absent: it is the
    server's text, and must not crash the call it was meant to pace.
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
        if math.isfinite(seconds):
            return seconds
    value = headers.get("retry-after")
    parsed = email.utils.parsedate_tz(value) if value else None
    if parsed is None:
        return None
    try:
        return float(email.utils.mktime_tz(parsed)) - (time.time() if now is None else now)
    except (ValueError, OverflowError):
        return None


def backoff_s(retry_number: int) -> float:
    """Exponential backoff with jitter for the ``retry_number``-th retry (0-based), as the SDK computes it."""
    return min(INITIAL_BACKOFF_S * 2.0**retry_number, MAX_BACKOFF_S) * random.uniform(0.75, 1.0)


class WaitRetryAfterOrBackoff(wait_base):
    """A tenacity wait that honours the failed response's retry headers, else backs off; both capped."""

    def __init__(self, headers_of: Callable[[BaseException], Mapping[str, str] | None], cap_s: float) -> None:
        self._headers_of = headers_of
        self._cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        headers = self._headers_of(exc) if exc is not None else None
        asked = retry_after_s(headers) if headers is not None else None
        delay = asked if asked is not None and asked > 0 else backoff_s(retry_state.attempt_number - 1)
        return max(0.0, min(delay, self._cap_s))
