"""Per-run spending limits, checked before each model call with the call's worst case (pure, no I/O).

A call starts only if what is spent, plus the worst case of every call in flight, plus this call's
worst case (its prompt plus ``max_tokens`` of output, priced) stays within the limits. So
concurrent calls can never jointly cross a budget. A call that fits only once the calls in flight
settle waits for them (``reserve`` returns None; ``backends/budgeted.py`` waits); a call refused
outright, whose worst case would cross a limit on top of what is spent alone, sends nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..contracts import Spend, TaskEstimate, Usage
from ..errors import BudgetExceededError
from .pricing import ModelPrice, cost_usd

PROMPT_SAFETY = 1.2
"""The budget's margin on a prompt's estimated size: code or JSON can tokenize denser than 3.5 chars a token."""


@dataclass(frozen=True)
class Limits:
    """The ceilings of one run; None means no limit of that kind."""

    max_cost_usd: float | None = None
    max_total_tokens: int | None = None


@dataclass
class Reservation:
    """A call's worst case, held while the call is in flight."""

    cost_usd: float
    tokens: int


@dataclass
class Budget:
    """What a run has spent and has in flight, against its ``Limits``."""

    limits: Limits
    prices: Mapping[str, ModelPrice]
    spent: Usage = field(default_factory=Usage)
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    reserved_tokens: int = 0
    held: Spend = field(default_factory=Spend)
    """Kept free for a call still to come (an orchestration's synthesis), so the run cannot use it up."""
    refused: int = 0
    in_flight: int = 0
    """Reservations not yet settled; at 0 nothing is reserved, whatever float sums left behind."""

    def reserve(
        self,
        model: str,
        input_tokens: int,
        max_output_tokens: int,
        cache_write_tokens: int = 0,
        tool_uses: Mapping[str, int] | None = None,
    ) -> Reservation | None:
        """Hold the worst case of one call; None if it fits only once calls in flight settle.

        ``cache_write_tokens`` of ``input_tokens`` may be billed as a prompt-cache write (1.25x or 2x input).
        ``tool_uses`` are the most server-tool requests it may bill (``web_search_requests``: its max_uses).

        Raises:
            BudgetExceededError: the call could cross a limit on top of what is spent alone (saying
                which limit and by how much), so waiting for the calls in flight cannot help.
        """
        written = min(cache_write_tokens, input_tokens)
        worst = Usage(
            input_tokens=input_tokens - written,
            output_tokens=max_output_tokens,
            cache_write_tokens=written,
            **(tool_uses or {}),
        )
        worst_usd = cost_usd(worst, model, self.prices)
        self._refuse_beyond_reach(worst, worst_usd)
        limit_usd, limit_tokens = self.limits.max_cost_usd, self.limits.max_total_tokens
        spent_usd = self.spent_usd + self.held.cost_usd + worst_usd
        spent_tokens = self.spent.total_tokens + self.held.usage.total_tokens + worst.total_tokens
        if self.in_flight and (
            (limit_usd is not None and spent_usd + self.reserved_usd > limit_usd)
            or (limit_tokens is not None and spent_tokens + self.reserved_tokens > limit_tokens)
        ):
            return None  # it fits beside what is spent; what is in flight settles first
        self.reserved_usd += worst_usd
        self.reserved_tokens += worst.total_tokens
        self.in_flight += 1
        return Reservation(worst_usd, worst.total_tokens)

    def _refuse_beyond_reach(self, worst: Usage, worst_usd: float) -> None:
        """Raise if the call's worst case crosses a limit on top of what is spent and kept, in flight aside."""
        limit_usd, limit_tokens = self.limits.max_cost_usd, self.limits.max_total_tokens
        kept = self.held.cost_usd
        if limit_usd is not None and self.spent_usd + kept + worst_usd > limit_usd:
            self.refused += 1
            held = f", ${kept:.4f} kept for the synthesis" if kept else ""
            raise BudgetExceededError(
                f"budget: ${self.spent_usd:.4f} spent and ${self.reserved_usd:.4f} in flight{held}; this call could "
                f"cost up to ${worst_usd:.4f}, over the run's limit of ${limit_usd:.4f} (raise it with "
                "max_cost_usd or SUBAGENT_MCP_MAX_RUN_COST_USD)",
                attempts=0,
            )
        kept_tokens = self.held.usage.total_tokens
        if limit_tokens is not None and self.spent.total_tokens + kept_tokens + worst.total_tokens > limit_tokens:
            self.refused += 1
            held = f", {kept_tokens:,} kept for the synthesis" if kept_tokens else ""
            raise BudgetExceededError(
                f"budget: {self.spent.total_tokens:,} tokens spent and {self.reserved_tokens:,} in flight{held}; "
                f"this call could use up to {worst.total_tokens:,}, over the run's limit of {limit_tokens:,} tokens "
                "(raise it with max_total_tokens or SUBAGENT_MCP_MAX_RUN_TOKENS)",
                attempts=0,
            )

    def settle(self, reservation: Reservation, model: str | None, usage: Usage) -> None:
        """Release a call's reservation and charge what it really used (failed calls included)."""
        self.in_flight = max(0, self.in_flight - 1)
        self.reserved_usd = max(0.0, self.reserved_usd - reservation.cost_usd) if self.in_flight else 0.0
        self.reserved_tokens = max(0, self.reserved_tokens - reservation.tokens) if self.in_flight else 0
        self.charge(model, usage)

    def charge(self, model: str | None, usage: Usage) -> None:
        """Charge usage no reservation holds (what is left of a call whose continuation the budget refused)."""
        self.spent = self.spent + usage
        self.spent_usd += cost_usd(usage, model, self.prices)


def room_for(call: TaskEstimate, prices: Mapping[str, ModelPrice]) -> Spend:
    """What a future call may reserve at worst: its worst-case prompt with the safety margin, plus max_tokens."""
    usage = Usage(input_tokens=math.ceil(call.max_input_tokens * PROMPT_SAFETY), output_tokens=call.max_output_tokens)
    return Spend(usage=usage, cost_usd=cost_usd(usage, call.model, prices))


def overshoot(limits: Limits, spent: Spend) -> str | None:
    """What a run billed beyond its ceilings, said plainly; None within them.

    Reservations keep a run under its ceilings unless a call bills more than its worst case: fetched content
    over ``max_content_tokens`` (a PDF, which it does not bound), search results beyond their allowance.
    """
    over: list[str] = []
    if limits.max_cost_usd is not None and spent.cost_usd > limits.max_cost_usd + 1e-9:
        over.append(
            f"billed ${spent.cost_usd:.4f}, ${spent.cost_usd - limits.max_cost_usd:.4f} over its max_cost_usd "
            f"of ${limits.max_cost_usd:.4f}"
        )
    if limits.max_total_tokens is not None and spent.usage.total_tokens > limits.max_total_tokens:
        over.append(
            f"billed {spent.usage.total_tokens:,} tokens, over its max_total_tokens of {limits.max_total_tokens:,}"
        )
    if not over:
        return None
    return (
        f"Over budget: this run {' and '.join(over)}. A call billed more than the worst case reserved for it, "
        "most likely fetched or searched web content beyond its allowance (a PDF, which max_content_tokens does "
        "not bound); lower the role's max_uses or SUBAGENT_MCP_WEB_FETCH_MAX_CONTENT_TOKENS."
    )
