"""The one gate model output passes before it enters our results: safe to store, to read back, to send.

A reply is valid JSON and still poison: a lone surrogate (``"\\udcff"``) cannot be encoded as UTF-8,
so storing or sending it raised and killed the stdio server; a NUL (``"\\u0000"``) cannot be stored in
PostgreSQL text; nesting past a few hundred levels cannot be read back by pydantic; ``NaN``, ``1e400`` and
5000-digit integers are not portable JSON at all. Strings are repaired (lone surrogates and NULs become
U+FFFD, on every store alike); what cannot be repaired is refused with a reason the model can act on in its
repair turn.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .contracts import Completion

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays accepted in a reply; stored results add a few levels around it."""

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
NUL = "\x00"


class UnsafeOutput(ValueError):
    """A reply that cannot be stored or sent as it is; the message says why, worded for the model."""


def safe_text(text: str) -> str:
    """``text`` with every lone surrogate (a split pair is joined) and every NUL replaced by U+FFFD.

    So model text is encodable as UTF-8 and storable in PostgreSQL, and SQLite saves the very same string.
    """
    if NUL in text:
        text = text.replace(NUL, REPLACEMENT)
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def safe_completion(completion: Completion) -> Completion:
    """``completion`` with its text, refusal, model and stop reason made safe to store and send."""
    update: dict[str, Any] = {"text": safe_text(completion.text), "model": safe_text(completion.model)}
    if completion.refusal is not None:
        update["refusal"] = safe_text(completion.refusal)
    if completion.stop_reason is not None:
        update["stop_reason"] = safe_text(completion.stop_reason)
    return completion.model_copy(update=update)


def load_json(text: str) -> Any:
    """Parse a reply as strict JSON and make it safe (``safe_text`` on every key and string).

    Raises:
        UnsafeOutput: not JSON, ``NaN``/``Infinity`` or a float out of range, an integer too long
            to convert, or nesting deeper than ``MAX_DEPTH``.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise UnsafeOutput(f"the reply is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        raise UnsafeOutput(_too_deep()) from None
    except UnsafeOutput:
        raise
    except ValueError:  # int(): more digits than sys.get_int_max_str_digits()
        raise UnsafeOutput("the reply holds an integer with thousands of digits; write it as a string") from None
    return _clean(value, 1)


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict | list) and depth > MAX_DEPTH:
        raise UnsafeOutput(_too_deep())
    if isinstance(value, dict):
        return {safe_text(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    return value


def _too_deep() -> str:
    return f"the reply nests objects and arrays more than {MAX_DEPTH} levels deep; flatten it"


def _refuse_constant(name: str) -> float:
    raise UnsafeOutput(f"the reply holds {name}, which JSON does not allow; use null or a string")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise UnsafeOutput(f"the reply holds the number {literal[:40]}, too large for a float; write it as a string")
    return number
