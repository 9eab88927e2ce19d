"""How far the Anthropic backend trusts the wire: a size cap on every reply body, decoded bytes counted.

httpx reads a whole body before the SDK sees it, and inflates gzip as it goes, so a 300 MB reply
(or a small gzip bomb) was buffered whole. A response hook checks ``Content-Length`` first, then
takes over decoding (gzip, deflate; nothing else is asked for) and refuses a body past the cap
while it streams in, so at most the cap plus one chunk is ever held.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx2
from anthropic import AnthropicError, DefaultAsyncHttpxClient

MAX_REPLY_BYTES = 8 * 1024 * 1024
"""Largest decoded reply body accepted: far above any real Messages reply (128k tokens is ~0.5 MB)."""

ACCEPT_ENCODING = "gzip, deflate"
_INFLATE_CHUNK = 64 * 1024
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}


class UnusableReplyError(AnthropicError):
    """The API's reply cannot be used (too large, malformed, impossible usage); sending it again will not help."""


def guarded_http_client(max_bytes: int = MAX_REPLY_BYTES) -> httpx2.AsyncClient:
    """The SDK's default HTTP client (proxies, keep-alive, limits) with every reply body capped at ``max_bytes``."""

    async def cap(response: httpx2.Response) -> None:
        cap_reply(response, max_bytes)

    return DefaultAsyncHttpxClient(event_hooks={"response": [cap]}, headers={"Accept-Encoding": ACCEPT_ENCODING})


def cap_reply(response: httpx2.Response, max_bytes: int) -> None:
    """Refuse ``response`` if it says it is too large; else make its body stream refuse to grow past the cap.

    Raises:
        UnusableReplyError: ``Content-Length`` over the cap, or an encoding we did not ask for.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise UnusableReplyError(_too_large(max_bytes, f"its Content-Length is {int(declared):,}"))
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > 1 or (codings and codings[0] not in _WBITS):
        raise UnusableReplyError(f"the API's reply is encoded as {', '.join(codings)!r}, which was not asked for")
    if codings:
        del response.headers["content-encoding"]  # decoded below, so httpx must not decode again
    stream = response.stream
    if not isinstance(stream, httpx2.AsyncByteStream):  # pragma: no cover - the async client's streams are async
        return
    response.stream = _CappedStream(stream, codings[0] if codings else None, max_bytes)


class _CappedStream(httpx2.AsyncByteStream):
    """A body stream that decodes ``encoding`` in bounded pieces and stops past ``max_bytes`` decoded."""

    def __init__(self, raw: httpx2.AsyncByteStream, encoding: str | None, max_bytes: int) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(_WBITS[encoding]) if encoding else None
        self._max_bytes = max_bytes
        self._seen = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._raw:
            for piece in self._decode(chunk):
                yield self._count(piece)
        if self._inflate is not None:
            yield self._count(self._inflate.flush())

    def _decode(self, chunk: bytes) -> Iterator[bytes]:
        if self._inflate is None:
            yield chunk
            return
        try:
            piece = self._inflate.decompress(chunk, _INFLATE_CHUNK)
            while piece:
                yield piece
                piece = self._inflate.decompress(self._inflate.unconsumed_tail, _INFLATE_CHUNK)
        except zlib.error as exc:
            raise UnusableReplyError(f"the API's compressed reply could not be decoded ({exc})") from None

    def _count(self, piece: bytes) -> bytes:
        self._seen += len(piece)
        if self._seen > self._max_bytes:
            raise UnusableReplyError(_too_large(self._max_bytes, "counted as it was decoded"))
        return piece

    async def aclose(self) -> None:
        await self._raw.aclose()


def _too_large(max_bytes: int, how: str) -> str:
    return f"the API's reply is larger than the {max_bytes:,} bytes accepted ({how}); refused without reading the rest"
