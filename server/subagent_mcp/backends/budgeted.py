"""A backend decorator that checks a run's ``Budget`` before every call and charges what each used.

A call's worst case includes ``max_uses`` of each server tool it offers (web searches are billed per use), and
as prompt tokens what those searches and fetches may add (``server_tools.worst_case_content_tokens``), in each
message of a paused turn, on top of what the earlier messages fetched, which the next one re-reads.

A call that fits only once the calls in flight have settled waits for them, in line, first come
first served: each settle wakes the first in line to try again. Refusing it would skip a subtask
for good over money that is merely reserved (at high concurrency, most of the ceiling can be).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import anyio

from ..contracts import Completion, CompletionRequest, Usage
from ..core.budget import PROMPT_SAFETY, Budget, Reservation
from ..core.caching import cached_prefix
from ..core.context import estimate_tokens
from ..core.pricing import ModelPrice, price_for, priced_model
from ..errors import ModelError
from ..server_tools import worst_case_content_tokens, worst_case_uses
from .base import ModelBackend, continuation_check

logger = logging.getLogger(__name__)


def request_input_tokens(request: CompletionRequest) -> int:
    """Estimated prompt tokens of ``request``: system, messages and the output schema the API is sent."""
    text = request.system + "".join(m.content for m in request.messages) + json.dumps(request.output_schema)
    return estimate_tokens(text)


def reserved_prompt_tokens(request: CompletionRequest) -> int:
    """The prompt size the budget holds for ``request``: the estimate with ``PROMPT_SAFETY`` on top."""
    return math.ceil(request_input_tokens(request) * PROMPT_SAFETY)


def reserved_content_tokens(request: CompletionRequest) -> int:
    """What the request's searches and fetches may add to its prompt, reserved beside it: the API bills it as input."""
    return worst_case_content_tokens(request.server_tools, request.web_fetch_max_content_tokens)


def reserved_cache_write_tokens(request: CompletionRequest) -> int:
    """Of the reserved prompt, what may be billed as a prompt-cache write: the marked prefix, with the margin."""
    prefix = cached_prefix(request)
    return math.ceil(estimate_tokens(prefix) * PROMPT_SAFETY) if prefix else 0


def billed_model(named: str | None, requested: str, prices: Mapping[str, ModelPrice]) -> str:
    """The model a reply is priced as (``pricing.priced_model``); warns the first time a reply names an unpriced one."""
    if named and price_for(named, prices) is not None:
        return named
    _warn_unpriced(named or "", requested, price_for(requested, prices) is not None)
    return priced_model(named, requested, prices)


@functools.lru_cache(maxsize=256)  # once per pair, and a hostile upstream naming endless models cannot grow it
def _warn_unpriced(named: str, requested: str, requested_priced: bool) -> None:
    if requested_priced:
        logger.warning(
            "a reply named the model %r, which has no price; it is priced as the requested %r "
            "(add the model to SUBAGENT_MCP_PRICES to price it as itself)",
            named[:100],
            requested,
        )
    else:
        logger.warning(
            "a reply named the model %r for a request to %r, and neither has a price: its cost counts as $0 and "
            "no max_cost_usd can limit it; add the model to SUBAGENT_MCP_PRICES",
            named[:100],
            requested,
        )


OnUsage = Callable[[CompletionRequest, str, Usage], Awaitable[None]]
"""Told of every finished call's usage (request, model, usage), e.g. to log it durably at once."""


@dataclass
class _Held:
    """A call's reservation (None while a continuation waits for its own) and the usage already charged."""

    reservation: Reservation | None
    charged: Usage = field(default_factory=Usage)


@dataclass(eq=False)
class _Turn:
    event: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class BudgetedBackend:
    """Waits while a call fits only after the calls in flight, refuses one that cannot fit; charges every attempt.

    A refused call sends nothing. ``on_usage`` hears of each call as it ends, so a task cancelled
    during its repair turn still has its first, billed attempt on record (``runs.UsageLedger``).
    The only settles a waiting call hears of are this backend's: give each ``Budget`` one of these.
    """

    inner: ModelBackend
    budget: Budget
    on_usage: OnUsage | None = None
    _line: deque[_Turn] = field(default_factory=deque[_Turn], init=False, repr=False)

    async def complete(self, request: CompletionRequest) -> Completion:
        held = _Held(await self._reserve(request))
        token = continuation_check.set(lambda paused, added: self._continue(held, request, paused, added))
        try:
            completion = await self.inner.complete(request)
        except ModelError as exc:
            await self._charge(held, request, exc.model, exc.usage)
            raise
        except BaseException:  # cancelled or crashed: nothing billed that we know of beyond continued messages
            if held.reservation is not None:
                self.budget.settle(held.reservation, request.model, Usage())
            self._wake_first()
            await self._record(request, request.model, held.charged)
            raise
        finally:
            continuation_check.reset(token)
        await self._charge(held, request, completion.model, completion.usage)
        return completion

    async def _continue(self, held: _Held, request: CompletionRequest, paused: Completion, added_tokens: int) -> None:
        """Charge a paused message and reserve the next one's worst case: a continued turn is several billed calls.

        Raises:
            BudgetExceededError: the next message could cross a limit; nothing more is sent.
        """
        assert held.reservation is not None
        model = billed_model(paused.model, request.model, self.budget.prices)
        self.budget.settle(held.reservation, model, paused.usage)
        held.reservation, held.charged = None, held.charged + paused.usage
        self._wake_first()
        held.reservation = await self._reserve(request, math.ceil(added_tokens * PROMPT_SAFETY))

    async def _reserve(self, request: CompletionRequest, added_prompt_tokens: int = 0) -> Reservation:
        """The call's reservation, once it fits; ``BudgetExceededError`` at once if it never can."""
        args = (
            request.model,
            reserved_prompt_tokens(request) + reserved_content_tokens(request) + added_prompt_tokens,
            request.max_tokens,
            reserved_cache_write_tokens(request),
            worst_case_uses(request.server_tools),
        )
        if not self._line and (held := self.budget.reserve(*args)) is not None:
            return held
        turn = _Turn()
        self._line.append(turn)
        try:
            while True:
                if self._line[0] is turn and (held := self.budget.reserve(*args)) is not None:
                    return held
                await turn.event.wait()
                turn.event = anyio.Event()
        finally:
            self._line.remove(turn)
            self._wake_first()

    def _wake_first(self) -> None:
        if self._line:
            self._line[0].event.set()

    async def _charge(self, held: _Held, request: CompletionRequest, named: str | None, usage: Usage) -> None:
        """Settle the call: charge what it used beyond the continued messages already charged, record all of it."""
        model = billed_model(named, request.model, self.budget.prices)  # an unpriced reply still costs money
        if held.reservation is not None:
            self.budget.settle(held.reservation, model, usage - held.charged)
        else:  # the budget refused a continuation: no reservation is left to release
            self.budget.charge(model, usage - held.charged)
        self._wake_first()
        await self._record(request, model, usage)

    async def _record(self, request: CompletionRequest, model: str, usage: Usage) -> None:
        if self.on_usage is not None and usage.total_tokens:
            with anyio.CancelScope(shield=True):  # what was billed is recorded even if the caller is cancelled
                await self.on_usage(request, model, usage)

    async def aclose(self) -> None:
        """The inner backend belongs to the service; closing a run's view of it does nothing."""
        return None
