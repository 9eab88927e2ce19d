"""The process-wide gate on model calls in flight: adaptive to rate limits, shared by every run.

One ``AdaptiveLimiter`` per service holds an ``AimdController`` (``core/concurrency.py``) and makes
attempts wait while the limit is full or a ``retry-after`` pauses the pool. Retries go ahead of
first attempts (each line first come first served): a retry has waited once already.

Where the retry loop sits: the gate is taken per HTTP attempt, not per call. The Anthropic backend
retries inside itself (tenacity): it opens a ``GatedCall`` for the whole call and takes a slot for
each attempt, giving it back before it sleeps on a retry, so a retry queues like any new attempt
and obeys the pool's limit and pause. The call stays "refused" from its first 429/529 until it is
answered or gives up, and meanwhile the limit does not grow: a probe one call higher lands on a
fresh call, not on one refused already. A backend that knows nothing of the gate (the scripted
double, the demo) is wrapped whole by ``LimitedBackend``: one slot per call.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio

from ..contracts import Completion, CompletionRequest
from ..core.concurrency import AimdController, Ticket
from ..errors import ModelError
from ..settings import Settings
from .base import ModelBackend

log = logging.getLogger(__name__)

OVERLOAD_STATUSES = frozenset({429, 529})
"""Rate limited, overloaded: the answers that mean "send less", unlike other 5xx or timeouts."""

OPEN = 1 << 30
"""The cap of a gate that never makes anyone wait (a backend used without a service)."""


@dataclass(eq=False)
class _Waiter:
    granted: Ticket | None = None
    event: anyio.Event = field(default_factory=anyio.Event)


class Slot:
    """One attempt's place in the pool; tell it how the attempt went (else it ends with no news)."""

    def __init__(self, call: GatedCall, ticket: Ticket) -> None:
        self._call, self._ticket, self.ended = call, ticket, False

    def succeeded(self) -> None:
        if self._end():
            self._call.limiter.controller.succeeded(self._ticket)
            self._call.answered()
            self._call.limiter._dispatch()

    def overloaded(self, retry_after_s: float | None = None) -> None:
        """Rate limited or overloaded (429/529); ``retry_after_s`` pauses the whole pool."""
        if not self._end():
            return
        limiter = self._call.limiter
        controller, now = limiter.controller, limiter.clock()
        self._call.refused()
        if controller.overloaded(self._ticket, now, retry_after_s):
            pause = controller.pause_left(now)
            log.warning(
                "rate limited or overloaded: model calls in flight cut to %d (of %d)%s",
                controller.limit,
                controller.ceiling,
                f"; no call starts for {pause:.2f} s" if pause else "",
            )
        limiter._dispatch()
        limiter._wake_head_for_pause()

    def finished(self) -> None:
        if self._end():
            self._call.limiter.controller.finished(self._ticket)
            self._call.limiter._dispatch()

    def _end(self) -> bool:
        ended, self.ended = self.ended, True
        return not ended


@dataclass(eq=False)
class GatedCall:
    """One model call through the gate, over all its attempts; close it when the call is over."""

    limiter: AdaptiveLimiter
    is_refused: bool = False

    @asynccontextmanager
    async def attempt(self) -> AsyncGenerator[Slot]:
        """Wait for a slot (after a refusal, in the retries' line) and hold it for one attempt."""
        slot = Slot(self, await self.limiter._acquire(retry=self.is_refused))
        try:
            yield slot
        finally:
            slot.finished()

    def refused(self) -> None:
        if not self.is_refused:
            self.is_refused = True
            self.limiter.controller.refused_call()

    def answered(self) -> None:
        if self.is_refused:
            self.is_refused = False
            self.limiter.controller.refused_call_done()

    def close(self) -> None:
        """The call is over, answered or not: a refusal it still carried no longer holds the limit."""
        self.answered()
        self.limiter._dispatch()


class AdaptiveLimiter:
    """Slots for model calls: at most the controller's limit in flight, none during a pause."""

    def __init__(self, controller: AimdController, clock: Callable[[], float] = time.monotonic) -> None:
        self.controller = controller
        self.clock = clock
        self._retries: deque[_Waiter] = deque()
        self._firsts: deque[_Waiter] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> AdaptiveLimiter:
        """The service's gate: ``max_concurrency`` as the cap, retry waits' cap as the longest pause."""
        controller = AimdController(
            ceiling=settings.max_concurrency,
            adaptive=settings.adaptive_concurrency,
            max_pause_s=settings.retry_max_wait_s,
        )
        return cls(controller)

    @classmethod
    def open(cls) -> AdaptiveLimiter:
        """A gate that never makes anyone wait and learns nothing."""
        return cls(AimdController(ceiling=OPEN, adaptive=False))

    @property
    def waiting(self) -> int:
        return len(self._retries) + len(self._firsts)

    @asynccontextmanager
    async def call(self) -> AsyncGenerator[GatedCall]:
        """One model call, whose attempts each take a slot (``GatedCall.attempt``)."""
        call = GatedCall(self)
        try:
            yield call
        finally:
            call.close()

    @asynccontextmanager
    async def slot(self) -> AsyncGenerator[Slot]:
        """A slot for a call of a single attempt."""
        async with self.call() as call, call.attempt() as slot:
            yield slot

    async def _acquire(self, retry: bool) -> Ticket:
        controller = self.controller
        if not self.waiting and controller.can_start(self.clock()):
            return controller.start()
        waiter, line = _Waiter(), self._retries if retry else self._firsts
        line.append(waiter)
        try:
            self._dispatch()
            while waiter.granted is None:
                pause = controller.pause_left(self.clock())
                with anyio.move_on_after(pause or math.inf):  # woken early when a new pause begins
                    await waiter.event.wait()
                if waiter.granted is None:  # a pause ended or began: start whoever may start now
                    waiter.event = anyio.Event()
                    self._dispatch()
        except BaseException:
            if waiter.granted is not None:  # cancelled just as it was let in: give the slot on
                controller.finished(waiter.granted)
                self._dispatch()
            else:
                line.remove(waiter)
            raise
        return waiter.granted

    def _dispatch(self) -> None:
        """Let the longest waiters in (retries first) while the limit has room and no pause holds."""
        controller, now = self.controller, self.clock()
        while self.waiting and controller.can_start(now):
            waiter = (self._retries or self._firsts).popleft()
            waiter.granted = controller.start()
            waiter.event.set()

    def _wake_head_for_pause(self) -> None:
        """A pause began: the first in line sets its timer to it, to let the line in when it ends."""
        line = self._retries or self._firsts
        if line and self.controller.pause_left(self.clock()):
            line[0].event.set()


@runtime_checkable
class GatedBackend(ModelBackend, Protocol):
    """A backend that takes a slot of the gate for each HTTP attempt itself (the Anthropic backend)."""

    def use_gate(self, gate: AdaptiveLimiter) -> None: ...


@dataclass
class LimitedBackend:
    """Holds one slot of the gate for each whole call of a backend that knows nothing of it."""

    inner: ModelBackend
    gate: AdaptiveLimiter

    async def complete(self, request: CompletionRequest) -> Completion:
        async with self.gate.slot() as slot:
            try:
                completion = await self.inner.complete(request)
            except ModelError as exc:
                if exc.status_code in OVERLOAD_STATUSES:
                    slot.overloaded()
                raise
            slot.succeeded()
            return completion

    async def aclose(self) -> None:
        await self.inner.aclose()


def limited(backend: ModelBackend, settings: Settings) -> ModelBackend:
    """``backend`` behind one new process-wide gate: per attempt if it can take the gate, else per call."""
    gate = AdaptiveLimiter.from_settings(settings)
    if isinstance(backend, GatedBackend):
        backend.use_gate(gate)
        return backend
    return LimitedBackend(backend, gate)
