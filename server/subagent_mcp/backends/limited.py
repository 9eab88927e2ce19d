"""A backend decorator that caps the model calls in flight across every run of the process."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from ..contracts import Completion, CompletionRequest
from .base import ModelBackend


@dataclass
class LimitedBackend:
    """Holds a slot of one process-wide limiter for each call, so two runs never double the rate."""

    inner: ModelBackend
    limiter: anyio.CapacityLimiter

    async def complete(self, request: CompletionRequest) -> Completion:
        async with self.limiter:
            return await self.inner.complete(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
