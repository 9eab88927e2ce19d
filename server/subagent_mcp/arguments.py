"""Checks on what a caller passed, each failing with an ``InputError`` a person can act on."""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .errors import InputError


def in_range(name: str, value: float | None, low: float, high: float) -> None:
    """Refuse ``value`` outside ``[low, high]``, saying the range; None means "not given" and passes."""
    if value is not None and not low <= value <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {_shown(value)}")


def _shown(value: float) -> str:
    """``value`` for a message: ``:g``, except an integer too large for a float, which is described instead."""
    try:
        return f"{value:g}"
    except OverflowError:
        return f"a number of about {int(int(value).bit_length() * 0.30103) + 1:,} digits"


def check_ceilings(max_cost_usd: float | None, max_total_tokens: int | None) -> None:
    """A run's cost and token ceilings, when given, must be positive and sane."""
    if max_cost_usd is not None and not 0 < max_cost_usd <= 1e9:
        raise InputError(f"max_cost_usd must be above 0 and at most 1,000,000,000 (USD), got {_shown(max_cost_usd)}")
    in_range("max_total_tokens", max_total_tokens, 1, 1e12)


def sentence(text: str) -> str:
    """``text`` ending in a full stop (or the ``?``/``!``/``.`` it has), so another sentence can follow it."""
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else f"{text}."


def require_text(value: str, name: str) -> str:
    """The text, stripped; empty or blank is refused."""
    if not value or not value.strip():
        raise InputError(f"{name} is empty; describe what should be done")
    return value.strip()


def first_error(exc: ValidationError) -> str:
    """The first validation error as "where: what", without pydantic's URL and input echo."""
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


MAX_LISTED_PROBLEMS = 10


def argument_problems(tool: str, exc: ValidationError) -> str:
    """Why ``tool``'s arguments were refused: one line per problem, its path and what to pass instead."""
    errors = exc.errors(include_url=False, include_context=False)
    lines = [f"- {_path(err['loc'])}: {_advice(err)}" for err in errors[:MAX_LISTED_PROBLEMS]]
    if len(errors) > MAX_LISTED_PROBLEMS:
        lines.append(f"- … and {len(errors) - MAX_LISTED_PROBLEMS} more")
    return "\n".join([f"{tool} was called with invalid arguments; fix them and call it again:", *lines])


_SURROGATE = re.compile("[\ud800-\udfff]")
NUL_REFUSED = "contains a NUL character (U+0000), which cannot be stored; remove it"


def text_problems(tool: str, arguments: dict[str, Any]) -> str | None:
    """Why ``tool``'s arguments are refused if a string (or key) in them holds a NUL or a surrogate, else None.

    A NUL is valid JSON (``"\\u0000"``) but PostgreSQL text cannot hold one; it is refused from every caller, on
    every store alike, before any token is spent. A lone surrogate only an in-process client can send (JSON parsers
    refuse it); no UTF-8 text, database row or reply can carry it. Both are named here, not left to crash what
    stores or encodes them.
    """
    found: list[str] = []
    todo: deque[tuple[tuple[int | str, ...], object]] = deque([((), arguments)])
    while todo:  # breadth first, without recursion: arguments may be nested deeper than the stack
        loc, value = todo.popleft()
        if isinstance(value, str):
            if (problem := string_problem(value)) is not None:
                found.append(f"- {_path(loc)}: {problem}")
        elif isinstance(value, dict):
            items: list[tuple[object, object]] = list(value.items())  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
            if any("\x00" in str(key) for key, _ in items):
                found.append(f"- {_path(loc)}: a key {NUL_REFUSED}")
            todo.extend(((*loc, str(key)), item) for key, item in items if "\x00" not in str(key))
        elif isinstance(value, list | tuple):
            todo.extend(((*loc, i), item) for i, item in enumerate(value))  # pyright: ignore[reportUnknownArgumentType]
    if not found:
        return None
    lines = found[:MAX_LISTED_PROBLEMS]
    if len(found) > MAX_LISTED_PROBLEMS:
        lines.append(f"- … and {len(found) - MAX_LISTED_PROBLEMS} more")
    return "\n".join([f"{tool} was called with invalid arguments; fix them and call it again:", *lines])


def string_problem(value: str) -> str | None:
    """Why ``value`` cannot be taken as text (a NUL, or a lone surrogate), worded to follow its name; else None."""
    if "\x00" in value:
        return NUL_REFUSED
    if (bad := _SURROGATE.search(value)) is not None:
        return _surrogate_advice(bad.group())
    return None


MAX_SHOWN_NAME_CHARS = 60


def unknown_arguments(tool: str, arguments: dict[str, Any], known: Collection[str]) -> str | None:
    """Why ``tool``'s arguments are refused if one is not among ``known`` (a misspelt ``max_subtask`` would
    otherwise be dropped without a word and the call run on defaults), else None."""
    unknown = [name for name in arguments if name not in known]
    if not unknown:
        return None
    takes = ", ".join(sorted(known)) or "no arguments"
    lines: list[str] = []
    for name in unknown[:MAX_LISTED_PROBLEMS]:
        shown = name if len(name) <= MAX_SHOWN_NAME_CHARS else f"{name[:MAX_SHOWN_NAME_CHARS]}…"
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"- {shown}: not an argument of {tool}{hint} (it takes {takes})")
    if len(unknown) > MAX_LISTED_PROBLEMS:
        lines.append(f"- … and {len(unknown) - MAX_LISTED_PROBLEMS} more")
    return "\n".join([f"{tool} was called with invalid arguments; fix them and call it again:", *lines])


def _surrogate_advice(char: str) -> str:
    return f"holds U+{ord(char):04X}, a lone surrogate that is not valid Unicode text; send it as UTF-8 text"


def _path(loc: tuple[int | str, ...]) -> str:
    """``('plan', 'subtasks', 0, 'id')`` as ``plan.subtasks[0].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out or "(arguments)"


def _advice(err: ErrorDetails) -> str:
    """Pydantic's message worded as what to do, with what was sent (its JSON type; short values only)."""
    kind, message = err["type"], str(err["msg"])
    if kind == "missing":
        return "required; add it"
    if kind == "extra_forbidden":
        return "not a known field; remove it"
    if kind in ("value_error", "assertion_error"):
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{re.sub(r'^[A-Z][a-z]* should ', 'should ', message)} (got {_json_kind(err['input'])})"


def _json_kind(value: object) -> str:
    """What was sent, by JSON type; a short string or a number is quoted, a long value never is."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a long string"
    if isinstance(value, list):
        return "an array"
    return "an object"
