"""How the fake API bills a request's prompt: text at 4 characters a token, with honest prompt caching.

The prompt is the request's text in the API's cache order (output schema, tools, system blocks, then
message blocks). A ``cache_control`` block marks a prefix; a mark whose prefix is shorter than the
model's minimum is ignored. The longest prefix already cached (per model) is billed as
``cache_read_input_tokens``, the rest up to the last mark as ``cache_creation_input_tokens``, and the
remainder as ``input_tokens``. New prefixes become readable only once their reply is sent, as the
real API makes a cache entry usable only after the response that wrote it begins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..core.caching import MAX_BREAKPOINTS, min_cacheable_tokens

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Block:
    """One piece of prompt text and the TTL of its ``cache_control`` mark, if it has one."""

    text: str
    ttl: str | None = None


@dataclass(frozen=True)
class Bill:
    """A prompt's usage and the cache entries to add (``writes``) once its reply is sent."""

    input_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    write_ttl: str = "5m"
    writes: tuple[str, ...] = field(default=())


def prompt_blocks(body: dict[str, Any]) -> list[Block]:
    """The request's prompt text in cache order; a top-level ``cache_control`` marks the last block."""
    blocks: list[Block] = []
    schema = body.get("output_config", {}).get("format", {}).get("schema")
    if schema is not None:
        blocks.append(Block(json.dumps(schema, separators=(",", ":"))))
    if body.get("tools"):
        blocks.append(Block(json.dumps(body["tools"], separators=(",", ":"))))
    blocks.extend(_blocks(body.get("system", "")))
    for message in body.get("messages", []):
        if isinstance(message, dict):
            blocks.extend(_blocks(message.get("content", "")))
    top = body.get("cache_control")
    if isinstance(top, dict) and blocks:
        blocks[-1] = Block(blocks[-1].text, str(top.get("ttl", "5m")))
    return blocks


def count_tokens(body: dict[str, Any]) -> int:
    """What the fake bills for the whole prompt, cached or not."""
    return max(1, sum(len(b.text) for b in prompt_blocks(body)) // CHARS_PER_TOKEN)


def breakpoints(body: dict[str, Any]) -> int:
    """How many blocks carry their own ``cache_control`` mark (the API allows ``MAX_BREAKPOINTS``)."""
    return sum(b.ttl is not None for b in prompt_blocks({**body, "cache_control": None}))


def bill(body: dict[str, Any], cached: set[str]) -> Bill:
    """Bill ``body`` against the prefixes in ``cached`` (keys from earlier bills' ``writes``)."""
    model = str(body.get("model", ""))
    blocks = prompt_blocks(body)
    total = count_tokens(body)
    minimum = min_cacheable_tokens(model)
    digest = hashlib.sha256(model.encode())
    ends: list[tuple[int, str, str | None]] = []  # per block: tokens up to its end, prefix key, its mark's TTL
    chars = 0
    for b in blocks:
        chars += len(b.text)
        digest.update(len(b.text).to_bytes(8, "big") + b.text.encode())
        ends.append((chars // CHARS_PER_TOKEN, digest.hexdigest(), b.ttl))
    marks = [i for i, (tokens, _, ttl) in enumerate(ends) if ttl is not None and tokens >= minimum]
    if not marks:
        return Bill(input_tokens=total)
    last = marks[-1]
    read = max((tokens for tokens, key, _ in ends[: last + 1] if key in cached), default=0)
    new = tuple(ends[i][1] for i in marks if ends[i][0] > read)
    written = ends[last][0] - read
    ttl = "1h" if any(ends[i][2] == "1h" for i in marks) else "5m"
    return Bill(
        input_tokens=total - ends[last][0],
        cache_read_tokens=read,
        cache_write_tokens=written,
        write_ttl=ttl,
        writes=new,
    )


def check_breakpoints(body: dict[str, Any]) -> str:
    """The API's refusal of too many ``cache_control`` blocks, or an empty string."""
    if breakpoints(body) > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided."
    return ""


def fetched_text(block: Any) -> str:
    """The page a ``web_fetch_tool_result`` block holds (text, or a PDF's base64), or '' for any other block."""
    if not isinstance(block, dict) or block.get("type") != "web_fetch_tool_result":
        return ""
    result: Any = block.get("content")
    document: Any = result.get("content") if isinstance(result, dict) else None
    source: Any = document.get("source") if isinstance(document, dict) else None
    return str(source.get("data", "")) if isinstance(source, dict) else ""


def _blocks(content: Any) -> list[Block]:
    if isinstance(content, str):
        return [Block(content)] if content else []
    out: list[Block] = []
    for b in content if isinstance(content, list) else []:
        if isinstance(b, dict) and b.get("type") == "text":
            mark = b.get("cache_control")
            out.append(Block(str(b.get("text", "")), str(mark.get("ttl", "5m")) if isinstance(mark, dict) else None))
        elif page := fetched_text(b):  # a fetched page sent back (a continued turn) is read, and billed, again
            out.append(Block(page))
    return out
