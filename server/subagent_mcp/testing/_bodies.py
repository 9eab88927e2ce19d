"""Hostile ways for the fake API to send a body: a trickle that never ends, a huge one, a gzip bomb.

Each returns whether the client took the whole body; False means it closed the connection first.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import anyio
from anyio.abc import SocketStream

from ._http11 import CLOSED, response_head

CHUNK = 64 * 1024
TRICKLE_LENGTH = 1 << 20
"""What a trickled reply's Content-Length promises: a plausible size it would take hours to drip."""


async def trickle(stream: SocketStream, status: int, headers: Mapping[str, str], every_s: float) -> bool:
    """Send the head, then one space (JSON's leading whitespace) per ``every_s`` until the client hangs up."""
    await stream.send(response_head(status, headers, TRICKLE_LENGTH, close=True))

    async def drip() -> None:
        try:
            while True:
                await stream.send(b" ")
                await anyio.sleep(every_s)
        except CLOSED:
            return

    async with anyio.create_task_group() as tg:
        tg.start_soon(drip)
        try:
            while await stream.receive():  # a client sends nothing more mid-reply; this returns when it closes
                pass
        except CLOSED:
            pass
        tg.cancel_scope.cancel()
    return False


async def send_padded(
    stream: SocketStream, status: int, headers: Mapping[str, str], data: bytes, *, size: int, gzip: bool
) -> bool:
    """Send ``data`` after enough leading spaces to make a ``size``-byte body, gzip-compressed if asked.

    The body is made chunk by chunk, so the fake never holds a huge one in memory.
    """
    padding = max(0, size - len(data))
    if gzip:
        body = _gzip(padding, data)
        head = response_head(status, {**headers, "content-encoding": "gzip"}, len(body), close=False)
        try:
            await stream.send(head + body)
        except CLOSED:
            return False
        return True
    try:
        await stream.send(response_head(status, headers, padding + len(data), close=False))
        while padding > 0:
            await stream.send(b" " * min(CHUNK, padding))
            padding -= CHUNK
        await stream.send(data)
    except CLOSED:
        return False
    return True


def _gzip(padding: int, data: bytes) -> bytes:
    """``padding`` spaces then ``data``, gzip-compressed: spaces compress about a thousandfold."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    spaces = b" " * CHUNK
    while padding > 0:
        parts.append(compressor.compress(spaces[: min(CHUNK, padding)]))
        padding -= CHUNK
    parts.append(compressor.compress(data))
    parts.append(compressor.flush())
    return b"".join(parts)
