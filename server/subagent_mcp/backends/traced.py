"""A backend decorator that makes each model call a ``chat {model}`` span and records the GenAI client metrics.

It sits around the process-wide gate (``limited.py``), so a call's span and duration include its
retries and any wait for a slot, but not the budget's line or the cache warm-up's. Usage is what
the API billed (a failed call's too), with cache reads and writes; content is never recorded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..contracts import Completion, CompletionRequest, Usage
from ..core.pricing import ModelPrice, cost_usd
from ..errors import ModelError
from ..telemetry import Telemetry, error_type, usage_attributes
from .base import ModelBackend
from .budgeted import billed_model


@dataclass
class TracedBackend:
    """Wraps ``inner``: one CLIENT span and one duration (plus token counts) per call."""

    inner: ModelBackend
    telemetry: Telemetry
    prices: Mapping[str, ModelPrice]

    async def complete(self, request: CompletionRequest) -> Completion:
        started = time.monotonic()
        with self.telemetry.chat(request.model, request.max_tokens, request.label) as span:
            try:
                completion = await self.inner.complete(request)
            except Exception as exc:  # a cancellation is no outcome of the API's: it gets no measurement
                usage, model = (exc.usage, exc.model) if isinstance(exc, ModelError) else (Usage(), None)
                if usage.total_tokens and span.is_recording():
                    span.set_attributes(usage_attributes(usage))
                    priced = billed_model(model, request.model, self.prices)
                    span.set_attribute("subagent_mcp.cost_usd", cost_usd(usage, priced, self.prices))
                self.telemetry.record_call(request.model, model, usage, time.monotonic() - started, error_type(exc))
                raise
            if span.is_recording():
                span.set_attributes(usage_attributes(completion.usage))
                span.set_attributes(
                    {
                        "gen_ai.response.model": completion.model,
                        "subagent_mcp.cost_usd": cost_usd(
                            completion.usage, billed_model(completion.model, request.model, self.prices), self.prices
                        ),
                        "subagent_mcp.attempts": completion.attempts,
                    }
                )
                if completion.stop_reason is not None:
                    span.set_attribute("gen_ai.response.finish_reasons", [completion.stop_reason])
            self.telemetry.record_call(
                request.model, completion.model, completion.usage, time.monotonic() - started, None
            )
            return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
