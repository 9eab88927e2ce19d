"""JSON-safe shrinking: make a JSON object fit a token target without cutting any value mid-way.

Every cut leaves valid JSON of the same shape and says what it removed: long strings end at a word
boundary with ``"… [truncated N chars]"``, long arrays keep their first items plus a
``"… N more items"`` element, wide objects keep their first keys plus a ``"…"`` key, and containers
below a depth (32 at most) become ``"[object with N keys elided]"`` / ``"[array with N items elided]"``.
Object keys are never cut. Pure and deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from ..contracts import JsonObject

Measure = Callable[[str], int]
"""Counts the tokens of a piece of text (``context.estimate_tokens``)."""

STRING_FLOOR = 24
"""Characters a truncated string keeps at the harshest level."""

_SEARCH_STEPS = 8  # bisection steps over harshness: 1/256 resolution, at most 9 passes per shrink
_DEPTH_ONSET = 0.5  # harshness at which deep nesting starts to go (strings and arrays go first)
_KEYS_ONSET = 0.7  # harshness at which objects start to lose keys
_MAX_DEPTH = 32  # a shrunk copy never nests deeper, which also bounds the recursion


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: object) -> str:
    """Compact JSON, non-ASCII kept as is (escapes would cost several tokens a character)."""
    return _ENCODER.encode(value)


@dataclass(frozen=True)
class Shrunk:
    """A shrunk copy of an object, its size, and what was cut from it."""

    value: JsonObject
    tokens: int
    strings: int
    arrays: int
    objects: int
    nested: int

    def describe(self) -> str:
        """What was cut, e.g. ``"2 long strings truncated, 1 nested value elided"``."""
        parts = [
            _count(self.strings, "long string", "truncated"),
            _count(self.arrays, "array", "shortened"),
            _count(self.objects, "object", "cut to its first keys"),
            _count(self.nested, "nested value", "elided"),
        ]
        return ", ".join(p for p in parts if p) or "nothing cut"


def shrink_object(value: JsonObject, target_tokens: int, measure: Measure) -> Shrunk | None:
    """The gentlest shrink of ``value`` that measures at most ``target_tokens``, or None if none does."""
    return Shrinker(value, measure).shrink(target_tokens)


class Shrinker:
    """Shrinks one object to any number of targets, reusing the attempts earlier targets made.

    Bisects a harshness in [0, 1]: string and array limits fall geometrically from the value's own
    longest to a floor (so the longest go first), then nesting depth and object width follow.
    """

    def __init__(self, value: JsonObject, measure: Measure) -> None:
        self._value = value
        self._measure = measure
        self._profile: _Profile | None = None
        self._attempts: dict[float, Shrunk] = {}

    def shrink(self, target_tokens: int) -> Shrunk | None:
        """The gentlest shrink that measures at most ``target_tokens``, or None if even the harshest is over."""
        best = self._attempt(1.0)
        if best.tokens > target_tokens:
            return None
        low, high = 0.0, 1.0
        for _ in range(_SEARCH_STEPS):
            mid = (low + high) / 2
            candidate = self._attempt(mid)
            if candidate.tokens <= target_tokens:
                high, best = mid, candidate
            else:
                low = mid
        return best

    def _attempt(self, t: float) -> Shrunk:
        if t not in self._attempts:
            if self._profile is None:
                self._profile = _profile(self._value)
            tally = _Tally()
            out = _cut_object(self._value, _limits(self._profile, t), 1, tally)
            tokens = self._measure(dumps(out))
            self._attempts[t] = Shrunk(out, tokens, tally.strings, tally.arrays, tally.objects, tally.nested)
        return self._attempts[t]


@dataclass(frozen=True)
class _Profile:
    chars: int  # longest string value
    items: int  # longest array
    keys: int  # widest object
    depth: int  # deepest container, the root being depth 0


@dataclass(frozen=True)
class _Limits:
    chars: int
    items: int
    keys: int
    depth: int  # containers at this depth or deeper are elided; the root (0) never is


@dataclass
class _Tally:
    strings: int = 0
    arrays: int = 0
    objects: int = 0
    nested: int = 0


def _profile(value: JsonObject) -> _Profile:
    chars = items = keys = depth = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            keys, depth = max(keys, len(node)), max(depth, level)
            children = node.values()
        elif isinstance(node, list):
            items, depth = max(items, len(node)), max(depth, level)
            children = node
        else:
            continue
        for child in children:
            if isinstance(child, str):
                chars = max(chars, len(child))
            elif isinstance(child, dict | list):
                stack.append((child, level + 1))
    return _Profile(chars, items, keys, depth)


def _limits(p: _Profile, t: float) -> _Limits:
    def geometric(high: int, low: int, share: float) -> int:
        return high if high <= low else max(low, round(high ** (1 - share) * low**share))

    def late(onset: float) -> float:
        return max(0.0, (t - onset) / (1 - onset))

    depth = min(_MAX_DEPTH, round(p.depth + 1 - p.depth * late(_DEPTH_ONSET)))
    return _Limits(
        geometric(p.chars, STRING_FLOOR, t), geometric(p.items, 1, t), geometric(p.keys, 1, late(_KEYS_ONSET)), depth
    )


def _cut(value: object, lim: _Limits, depth: int, tally: _Tally) -> object:
    if isinstance(value, str):
        return _cut_string(value, lim.chars, tally)
    if isinstance(value, dict):
        if depth >= lim.depth:
            tally.nested += 1
            return f"[object with {_n(len(value), 'key')} elided]"
        return _cut_object(value, lim, depth + 1, tally)
    if isinstance(value, list):
        if depth >= lim.depth:
            tally.nested += 1
            return f"[array with {_n(len(value), 'item')} elided]"
        kept = value if len(value) <= lim.items + 1 else value[: lim.items]
        out = [_cut(v, lim, depth + 1, tally) for v in kept]
        if len(kept) < len(value):
            tally.arrays += 1
            out.append(f"… {_n(len(value) - len(kept), 'more item')}")
        return out
    return value


def _cut_object(value: dict[str, object], lim: _Limits, child_depth: int, tally: _Tally) -> JsonObject:
    """Cut an object whose values sit at ``child_depth``; more than one key over the limit drops keys."""
    pairs = list(value.items())
    kept = pairs if len(pairs) <= lim.keys + 1 else pairs[: lim.keys]
    out: JsonObject = {k: _cut(v, lim, child_depth, tally) for k, v in kept}
    if len(kept) < len(pairs):
        tally.objects += 1
        marker = "…"
        while marker in out:
            marker += "…"
        out[marker] = f"[{_n(len(pairs) - len(kept), 'more key')} elided]"
    return out


def truncate_string(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary, with a marker; unchanged if that saves nothing."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if space >= limit * 0.6:  # a word boundary not too far back; else cut inside the long word
        head = head[:space]
    head = head.rstrip()
    out = f"{head}… [truncated {len(text) - len(head):,} chars]"
    return text if len(out) >= len(text) else out


def _cut_string(text: str, limit: int, tally: _Tally) -> str:
    out = truncate_string(text, limit)
    if out is not text:
        tally.strings += 1
    return out


def _count(n: int, noun: str, verb: str) -> str:
    return f"{_n(n, noun)} {verb}" if n else ""


def _n(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
