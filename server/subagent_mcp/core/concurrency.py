"""Adaptive concurrency for model calls: how many may be in flight, learned from rate limits (pure, no I/O).

AIMD, as TCP does it. The limit starts at the configured cap. A rate-limit or overload answer
(429/529) halves it, never below the floor, once per round: answers to calls sent before the last
cut carry no news (they left at the old rate), so a burst of 429s cuts once, not once per call.
Any refusal, of this round or not, also brings the limit below the calls that were in flight when
the refused one started: the API just said it takes fewer than that. Each ``limit`` successes add
one back, up to the cap, but not while a refused call is still unanswered: the probe one call
higher should risk a fresh call, not one refused already. A ``retry-after`` pauses the whole pool:
no call starts before it has passed. The async side that makes calls wait is ``backends/limited.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Ticket:
    """One call in flight: the controller's round when it started, and the calls then in flight, itself included."""

    round: int
    in_flight: int = 1


@dataclass
class AimdController:
    """The limit on calls in flight and the pool's pause, moved by what calls report (times are a clock's)."""

    ceiling: int
    """The configured cap: the limit at the start, and the most it recovers to."""
    floor: int = 1
    adaptive: bool = True
    """False: a fixed limit at ``ceiling`` and no pause (what the service did before)."""
    max_pause_s: float = 30.0
    """The longest a ``retry-after`` may pause the pool, like the cap on one retry's wait."""
    limit: int = field(init=False)
    in_flight: int = 0
    round: int = 0
    """Counts cuts; a call's overload cuts only if no cut happened since it started."""
    successes: int = 0
    """Successes since the limit last moved."""
    unanswered: int = 0
    """Calls refused (429/529) and neither answered since nor given up: the limit does not grow meanwhile."""
    paused_until: float = -math.inf
    overloads: int = 0
    cuts: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got floor {self.floor} and ceiling {self.ceiling}")
        self.limit = self.ceiling

    def can_start(self, now: float) -> bool:
        """Whether one more call may start at ``now``: a free slot under the limit, and no pause."""
        return self.in_flight < self.limit and now >= self.paused_until

    def pause_left(self, now: float) -> float:
        """Seconds until the pool's pause ends (0 when there is none)."""
        return max(0.0, self.paused_until - now)

    def start(self) -> Ticket:
        """Count a call as in flight; the caller checked ``can_start``."""
        self.in_flight += 1
        return Ticket(self.round, self.in_flight)

    def succeeded(self, ticket: Ticket) -> None:
        """A call got its answer: every ``limit`` of these add one to the limit, up to the ceiling."""
        self._end()
        if not self.adaptive or self.limit >= self.ceiling or self.unanswered:
            return
        self.successes += 1
        if self.successes >= self.limit:
            self.limit += 1
            self.successes = 0

    def overloaded(self, ticket: Ticket, now: float, retry_after_s: float | None = None) -> bool:
        """A call was rate limited or found the API overloaded; True if this cut the limit.

        ``retry_after_s`` (the server's ``retry-after``) pauses every new call until it has passed.
        """
        self._end()
        if not self.adaptive:
            return False
        self.overloads += 1
        if retry_after_s is not None and retry_after_s > 0:
            self.paused_until = max(self.paused_until, now + min(retry_after_s, self.max_pause_s))
        below_its_start = max(self.floor, ticket.in_flight - 1)  # the API took fewer than were in flight then
        if ticket.round != self.round:  # it started before the last cut, at a rate already given up
            self.limit = min(self.limit, below_its_start)
            return False
        self.limit = min(max(self.floor, self.limit // 2), below_its_start)
        self.round += 1
        self.successes = 0
        self.cuts += 1
        return True

    def refused_call(self) -> None:
        """A call was refused for the first time; until ``refused_call_done``, the limit does not grow."""
        self.unanswered += 1

    def refused_call_done(self) -> None:
        """A refused call was answered at last, or gave up."""
        if self.unanswered < 1:
            raise RuntimeError("a refused call ended that was never counted")
        self.unanswered -= 1

    def finished(self, ticket: Ticket) -> None:
        """A call ended with no news on the rate (another error, a timeout, a cancellation)."""
        self._end()

    def _end(self) -> None:
        if self.in_flight < 1:
            raise RuntimeError("a call ended that the controller never started")
        self.in_flight -= 1
