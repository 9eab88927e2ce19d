"""A backend decorator that lets one call write a cached prefix before its twins are sent to read it.

The API makes a cache entry readable only once the reply that wrote it begins, so requests sent
together with the same marked prefix would each pay the write (1.25x) and none the read (0.1x).
Here the first call with a given prefix goes alone; calls with the same prefix wait for it, then go
(and read). A failed first call hands the turn to the next. A prefix not used for its TTL is cold again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from ..contracts import Completion, CompletionRequest
from ..core.caching import cached_prefix
from .base import ModelBackend

TTL_S = {"5m": 300.0, "1h": 3600.0}
_MARGIN_S = 10.0  # a prefix this close to expiring is treated as cold


@dataclass
class CacheWarmupBackend:
    """Sends the first request of each marked prefix alone; the rest wait until it is written."""

    inner: ModelBackend
    clock: Callable[[], float] = time.monotonic
    _writing: dict[str, anyio.Event] = field(default_factory=dict[str, anyio.Event])
    _warm_until: dict[str, float] = field(default_factory=dict[str, float])

    async def complete(self, request: CompletionRequest) -> Completion:
        prefix = cached_prefix(request)
        if not prefix or request.cache is None:
            return await self.inner.complete(request)
        key = hashlib.sha256(f"{request.model}\0{request.cache.ttl}\0{prefix}".encode()).hexdigest()
        ttl_s = TTL_S[request.cache.ttl]
        while (writing := self._writing.get(key)) is not None:
            await writing.wait()
        if self._warm_until.get(key, 0.0) > self.clock():
            completion = await self.inner.complete(request)
            self._warm_until[key] = self.clock() + ttl_s - _MARGIN_S  # a read refreshes the entry's lifetime
            return completion
        done = self._writing[key] = anyio.Event()
        try:
            completion = await self.inner.complete(request)
            self._warm_until[key] = self.clock() + ttl_s - _MARGIN_S
            return completion
        finally:
            del self._writing[key]
            done.set()

    async def aclose(self) -> None:
        await self.inner.aclose()
