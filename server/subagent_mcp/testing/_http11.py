"""Just enough HTTP/1.1 for the fake Messages API: Content-Length framing and keep-alive, no chunking."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus

import anyio
from anyio.abc import SocketStream

from ..contracts import JsonObject

MAX_HEAD_BYTES = 64 * 1024
CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)
"""What ``receive``/``send`` raise once the peer has gone."""


def parse_json_object(raw: bytes) -> JsonObject:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def read_request(stream: SocketStream, buffer: bytearray) -> tuple[str, str, dict[str, str], bytes] | None:
    """Read one request (Content-Length framing) from ``stream``; None when the client closed it."""
    try:
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                return None
            buffer += await stream.receive()
        request_line, *lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        method, target, _version = request_line.split(" ", 2)
        headers = {name.strip().lower(): value.strip() for name, _, value in (ln.partition(":") for ln in lines)}
        if "transfer-encoding" in headers:  # chunked bodies are not supported: drop the connection
            return None
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            buffer += await stream.receive()
    except (*CLOSED, ValueError):
        return None
    raw = bytes(buffer[:length])
    del buffer[:length]
    return method, target.split("?", 1)[0], headers, raw


def response_head(status: int, headers: Mapping[str, str], length: int, *, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}", "content-type: application/json"]
    lines.append(f"content-length: {length}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"connection: {'close' if close else 'keep-alive'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else "Error"
