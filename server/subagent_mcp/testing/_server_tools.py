"""The fake API's server-tool blocks: ``server_tool_use`` and result blocks, and the counts the API bills.

A request that offers ``web_search`` is answered, by default, as if the model searched once before its
JSON answer (``fake_anthropic``); ``search_replies`` scripts searches and ``pause_turn`` explicitly.
"""

from __future__ import annotations

from typing import Any

from ..contracts import JsonObject
from ._billing import CHARS_PER_TOKEN, fetched_text

_RESULT_TYPES = {"web_search": "web_search_tool_result", "web_fetch": "web_fetch_tool_result"}


def offered_server_tools(body: JsonObject) -> list[str]:
    """The names of the server tools a request body offers (``web_search``, ...), in the order sent."""
    tools: Any = body.get("tools") or []
    return [str(t.get("name")) for t in tools if isinstance(t, dict) and t.get("type") != "custom" and "type" in t]


def search_blocks(query: str, n: int = 1, *, start: int = 0) -> tuple[JsonObject, ...]:
    """``n`` web searches as the API reports them: a ``server_tool_use`` block, then its results block."""
    blocks: list[JsonObject] = []
    for i in range(start, start + n):
        tool_id = f"srvtoolu_fake_{i + 1:04d}"
        blocks.append({"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": query}})
        blocks.append(
            {
                "type": "web_search_tool_result",
                "tool_use_id": tool_id,
                "content": [
                    {
                        "type": "web_search_result",
                        "title": f"Result {i + 1} for {query}",
                        "url": f"https://example.com/{i + 1}",
                        "encrypted_content": "ZmFrZQ==",
                        "page_age": None,
                    }
                ],
            }
        )
    return tuple(blocks)


def fetch_blocks(tokens: int, n: int = 1, *, start: int = 0, pdf: bool = False) -> tuple[JsonObject, ...]:
    """``n`` web fetches of a ``tokens``-token page each: a ``server_tool_use`` block, then its result block.

    A text page is cut to the request's ``max_content_tokens`` when sent (``capped_fetches``), as the API cuts it;
    a ``pdf`` is not, as the API bounds only text.
    """
    blocks: list[JsonObject] = []
    for i in range(start, start + n):
        tool_id, url = f"srvtoolu_fake_fetch_{i + 1:04d}", f"https://example.com/page-{i + 1}"
        source = (
            {"type": "base64", "media_type": "application/pdf", "data": "A" * (tokens * CHARS_PER_TOKEN)}
            if pdf
            else {"type": "text", "media_type": "text/plain", "data": "x" * (tokens * CHARS_PER_TOKEN)}
        )
        blocks.append({"type": "server_tool_use", "id": tool_id, "name": "web_fetch", "input": {"url": url}})
        document = {"type": "document", "source": source, "title": f"Page {i + 1}"}
        result = {"type": "web_fetch_result", "url": url, "content": document, "retrieved_at": None}
        blocks.append({"type": "web_fetch_tool_result", "tool_use_id": tool_id, "content": result})
    return tuple(blocks)


def capped_fetches(blocks: tuple[JsonObject, ...], body: JsonObject) -> tuple[JsonObject, ...]:
    """``blocks`` with each fetched text page cut to the ``max_content_tokens`` the request's web_fetch carries."""
    tools: Any = body.get("tools") or []
    caps = [t.get("max_content_tokens") for t in tools if isinstance(t, dict) and t.get("name") == "web_fetch"]
    cap = caps[0] if caps and isinstance(caps[0], int) else None
    if cap is None:
        return blocks
    out: list[JsonObject] = []
    for b in blocks:
        source: Any = b.get("content", {}).get("content", {}).get("source") if fetched_text(b) else None
        if isinstance(source, dict) and source.get("type") == "text":
            cut = {**source, "data": str(source.get("data", ""))[: cap * CHARS_PER_TOKEN]}
            content: Any = b["content"]
            b = {**b, "content": {**content, "content": {**content["content"], "source": cut}}}
        out.append(b)
    return tuple(out)


def fetched_tokens(blocks: tuple[JsonObject, ...]) -> int:
    """Input tokens the pages fetched in ``blocks`` add to the call, which the API bills as input."""
    return sum(len(fetched_text(b)) for b in blocks) // CHARS_PER_TOKEN


def tool_counts(blocks: tuple[JsonObject, ...]) -> dict[str, int]:
    """``usage.server_tool_use`` for a reply's blocks: its ``server_tool_use`` blocks counted per tool."""
    names = [b.get("name") for b in blocks if b.get("type") == "server_tool_use"]
    return {"web_search_requests": names.count("web_search"), "web_fetch_requests": names.count("web_fetch")}


def continued_content(body: JsonObject) -> list[JsonObject]:
    """The blocks of the assistant turn a continuation sent back (empty for a first request)."""
    messages: Any = body.get("messages") or []
    last = messages[-1] if messages else {}
    if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), list):
        return []
    return [b for b in last["content"] if isinstance(b, dict)]
