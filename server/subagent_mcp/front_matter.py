"""Reading one agent file: bounded UTF-8 text, its YAML front matter as plain JSON values, and its body.

Claude Code's files are not always valid YAML (``description: ... user: "..."``), so such front matter is
read as Claude Code reads it, one ``key: value`` a line.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_AGENT_FILE_BYTES = 256 * 1024
"""Largest agent (or schema) file read; real ones are a few KiB."""
MAX_EXPANDED_CHARS = 1024 * 1024
"""Most JSON a file's front matter may expand to: YAML aliases can make a small file huge to walk."""


class AgentFileError(Exception):
    """Why one agent file cannot be used; the message is shown with the file's path."""


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The front matter as plain JSON values (``yaml.safe_load``, bounded) and the Markdown body."""
    lines = text.removeprefix("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise AgentFileError("does not start with YAML front matter (a '---' line, then name: and description:)")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise AgentFileError("its front matter is not closed by a '---' line")
    front = "\n".join(lines[1:end])
    try:
        meta = load_yaml(front, "front matter", first_line=2)
    except _ColonInValue:
        meta = _key_lines(lines[1:end])  # Claude Code's own files: `description: ... user: "..."` on one line
        if meta is None:
            raise
    if not isinstance(meta, dict):
        raise AgentFileError("its front matter must be a mapping (name: ..., description: ...)")
    return meta, "\n".join(lines[end + 1 :])


_COLON_IN_VALUE = "mapping values are not allowed here"


class _ColonInValue(AgentFileError):
    """YAML refused a ``key: value`` line because its value holds ``: `` too (Claude Code writes such lines)."""


_KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*):(?:\s+(.*))?$")


def _key_lines(lines: list[str]) -> dict[str, Any] | None:
    """Front matter read as Claude Code reads it when it is not valid YAML: one ``key: value`` a line.

    Claude Code writes descriptions with ``user: "..."`` examples inside a plain scalar, which YAML
    refuses; a value runs to the end of its line (indented lines continue it). None if a line fits neither.
    """
    meta: dict[str, Any] = {}
    key: str | None = None
    for line in lines:
        found = _KEY_LINE.match(line)
        if found:
            key = str(found.group(1))
            meta[key] = _unquote((found.group(2) or "").strip())
        elif line[:1] in (" ", "\t") and key is not None:
            meta[key] = f"{meta[key]} {line.strip()}".strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            return None
    return meta or None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_text(path: Path) -> str:
    """A regular file's UTF-8 text, at most ``MAX_AGENT_FILE_BYTES`` (FIFOs and devices are never opened)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise AgentFileError("is not a regular file")
        if info.st_size > MAX_AGENT_FILE_BYTES:
            raise AgentFileError(f"is {info.st_size:,} bytes; the most read is {MAX_AGENT_FILE_BYTES:,} (256 KiB)")
        with path.open("rb") as f:
            data = f.read(MAX_AGENT_FILE_BYTES + 1)
    except OSError as exc:
        raise AgentFileError(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_AGENT_FILE_BYTES:
        raise AgentFileError(f"is larger than {MAX_AGENT_FILE_BYTES:,} bytes (256 KiB), the most read")
    if (nul := data.find(b"\x00")) >= 0:  # UTF-16 or binary; a prompt or description holding one is never meant
        raise AgentFileError(f"holds a NUL character (U+0000) at byte {nul}; save it as UTF-8 text without one")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentFileError(f"is not UTF-8 text (byte {exc.start})") from None


def load_yaml(text: str, what: str, first_line: int = 1) -> Any:
    """``yaml.safe_load(text)`` as plain JSON values, refusing what expands past ``MAX_EXPANDED_CHARS``."""
    try:
        value = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + first_line}" if mark is not None else ""
        error = _ColonInValue if exc.problem == _COLON_IN_VALUE else AgentFileError
        raise error(f"its {what} is not valid YAML{where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise AgentFileError(f"its {what} is not valid YAML: {exc}") from None
    except RecursionError:
        raise AgentFileError(f"its {what} nests too deeply") from None
    return _plain(value, what)


def _plain(value: Any, what: str) -> Any:
    """``value`` copied through JSON, lazily, so aliases that expand without end are refused, not walked."""
    chunks: list[str] = []
    size = 0
    try:  # iterencode without _one_shot is the pure-Python generator: it stops when we stop pulling
        for chunk in json.JSONEncoder(default=str, allow_nan=False).iterencode(value):
            size += len(chunk)
            if size > MAX_EXPANDED_CHARS:
                raise AgentFileError(f"its {what} expands to more than 1 MiB (YAML aliases repeated inside aliases?)")
            chunks.append(chunk)
    except RecursionError:
        raise AgentFileError(f"its {what} nests too deeply") from None
    except (ValueError, TypeError) as exc:  # a self-referencing alias, NaN, a key that is not text
        raise AgentFileError(f"its {what} has something JSON cannot hold: {exc}") from None
    plain = json.loads("".join(chunks))
    if _holds_nul(plain):  # written as a YAML escape ("\\0"): no name, model or description should hold one
        raise AgentFileError(f"its {what} holds a NUL character (U+0000); remove it")
    return plain


def _holds_nul(value: Any) -> bool:
    """True if a string or key anywhere in ``value`` (plain JSON values) holds U+0000; iterative, as nesting is deep."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str) and "\x00" in item:
            return True
        if isinstance(item, dict):
            todo.extend(item)  # pyright: ignore[reportUnknownArgumentType]
            todo.extend(item.values())  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
        elif isinstance(item, list):
            todo.extend(item)  # pyright: ignore[reportUnknownArgumentType]
    return False
