"""The one policy every output schema a caller supplies must pass, and a validator that never fetches.

A schema must be self-contained: its only ``$ref``s point into its own ``$defs`` (or
``definitions``), none loops back on itself, and it nests at most ``MAX_SCHEMA_DEPTH`` levels.
Otherwise jsonschema would fetch URLs or read local files named in a ``$ref`` (and quote them in
errors), or recurse until the stack runs out. The validator refuses retrieval even for a path
this check missed. With its ``$ref``s expanded it has at most ``MAX_SCHEMA_SIZE`` subschemas (a
reply is validated on the event loop), and the API's structured outputs must be able to take it
(``api_schema``: what is sent, a type list as the ``anyOf`` it means).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from .contracts import JsonObject
from .core.graph import find_cycle
from .errors import InputError

MAX_SCHEMA_DEPTH = 32
"""Deepest nesting of objects and arrays accepted in a schema; real output schemas use a handful."""

MAX_SCHEMA_SIZE = 10_000
"""Most subschemas a schema may expand to with its $refs resolved: validating a reply walks about that many."""

LOCAL_REF = re.compile(r"^#/(\$defs|definitions)/[^/]")
META_SCHEMAS = ("https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2020-12/schema#")
_ELSEWHERE = ("$id", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")
_NOT_SCHEMAS = frozenset({"enum", "const", "default", "examples", "dependentRequired", "$vocabulary"})
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})

Pointer = tuple[str, ...]


def _refuse(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)


NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse)
"""A registry that retrieves nothing: a ``$ref`` outside the schema is an error, never a request."""


def validator(schema: JsonObject) -> Draft202012Validator:
    """A 2020-12 validator for ``schema`` that resolves ``$ref`` only inside ``schema`` itself."""
    return Draft202012Validator(schema, registry=NO_RETRIEVAL)


def check_output_schema(schema: object) -> JsonObject:
    """Return ``schema`` if it is a usable, self-contained JSON Schema for an object, else raise ``InputError``."""
    if not isinstance(schema, dict):
        raise InputError("output_schema must be a JSON object (a JSON Schema), e.g. {'type': 'object', ...}")
    checked: JsonObject = {str(k): v for k, v in schema.items()}
    _check_depth(checked)
    _check_references(checked)
    _check_size(checked)
    try:
        Draft202012Validator.check_schema(checked)
    except SchemaError as exc:
        raise InputError(f"output_schema is not a valid JSON Schema at {_where(exc.path)}: {exc.message}") from None
    if checked.get("type") != "object":
        raise InputError('output_schema must describe an object: set "type": "object" at its root')
    api_schema(checked)
    return checked


def api_schema(schema: JsonObject) -> JsonObject:
    """``schema`` as the Messages API's structured outputs take it (the SDK's ``transform_schema``).

    A type list (``"type": ["string", "null"]``), which the SDK cannot transform, is sent as the
    ``anyOf`` of one branch per type it means, and draft-7 ``definitions`` as the ``$defs`` the SDK keeps
    (refs rewritten to match); replies are still validated against ``schema`` itself.

    Raises:
        InputError: part of ``schema`` cannot be sent; the message says where and why.
    """
    from anthropic import transform_schema  # here, not at import: ``anthropic`` takes a second to import

    sendable = _split_type_lists(_definitions_as_defs(schema))
    try:
        return transform_schema(sendable)
    except Exception:  # the SDK raises ValueError, TypeError or (assert_never) AssertionError: all the caller's
        where, node, problem = _first_untransformable(sendable, ())
    if isinstance(node, bool):
        raise InputError(
            f"output_schema has a boolean schema ({str(node).lower()}) at {_where(where)}, which the Anthropic "
            'API\'s structured outputs cannot take; write a schema object with a "type" there'
        )
    raise InputError(f"output_schema cannot be sent to the Anthropic API at {_where(where)}: {problem}")


def _definitions_as_defs(schema: JsonObject) -> JsonObject:
    """``schema`` with root ``definitions`` moved into ``$defs`` and every ``#/definitions/`` ref pointed there.

    The SDK keeps ``$defs`` but would fold ``definitions`` into a description, leaving the refs dangling.
    """
    definitions = schema.get("definitions")
    if not isinstance(definitions, dict):
        return schema
    defs: Any = schema.get("$defs", {})
    clash = sorted(set(definitions) & set(defs)) if isinstance(defs, dict) else []  # pyright: ignore[reportUnknownArgumentType]
    if clash or not isinstance(defs, dict):
        raise InputError(f"output_schema has both $defs and definitions naming {', '.join(clash)}; keep one of them")
    moved = {k: v for k, v in schema.items() if k != "definitions"}
    moved["$defs"] = {**defs, **definitions}  # pyright: ignore[reportUnknownArgumentType]
    return _refs_renamed(moved)


def _refs_renamed(node: Any) -> Any:
    """``node`` with each ``$ref`` into ``#/definitions/`` pointing into ``#/$defs/`` instead."""
    if isinstance(node, dict):
        out = {k: _refs_renamed(v) for k, v in node.items()}  # pyright: ignore[reportUnknownVariableType]
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            out["$ref"] = "#/$defs/" + ref.removeprefix("#/definitions/")
        return out
    if isinstance(node, list):
        return [_refs_renamed(v) for v in node]  # pyright: ignore[reportUnknownVariableType]
    return node


_TYPE_KEYWORDS: dict[str, frozenset[str]] = {
    "object": frozenset(
        {
            "properties",
            "patternProperties",
            "additionalProperties",
            "unevaluatedProperties",
            "required",
            "propertyNames",
            "minProperties",
            "maxProperties",
            "dependentRequired",
            "dependentSchemas",
        }
    ),
    "array": frozenset(
        {
            "items",
            "prefixItems",
            "unevaluatedItems",
            "contains",
            "minContains",
            "maxContains",
            "minItems",
            "maxItems",
            "uniqueItems",
        }
    ),
    "string": frozenset({"minLength", "maxLength", "pattern", "format", "contentEncoding", "contentMediaType"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
}
_TYPE_KEYWORDS["integer"] = _TYPE_KEYWORDS["number"]
_TYPED = frozenset().union(*_TYPE_KEYWORDS.values())
_ANNOTATIONS = ("title", "description")


def _split_type_lists(node: object) -> Any:
    """``node`` with each ``"type": [A, B]`` as ``anyOf`` of an A and a B branch, each with its own keywords."""
    if not isinstance(node, dict):
        return node
    schema: JsonObject = {}
    for key, value in node.items():
        if key in _NOT_SCHEMAS:
            schema[key] = value
        elif key in _NAMED and isinstance(value, dict):
            schema[key] = {name: _split_type_lists(sub) for name, sub in value.items()}
        elif isinstance(value, list) and key != "type":
            schema[key] = [_split_type_lists(sub) for sub in value]
        else:
            schema[key] = _split_type_lists(value)
    types = schema.get("type")
    if not isinstance(types, list):
        return schema
    if len(types) == 1:
        return {**schema, "type": types[0]}
    rest = {k: v for k, v in schema.items() if k != "type" and k not in _ANNOTATIONS}
    branches = [
        {"type": t, **{k: v for k, v in rest.items() if k not in _TYPED or k in _TYPE_KEYWORDS.get(str(t), ())}}
        for t in types
    ]
    return {"anyOf": branches, **{k: schema[k] for k in _ANNOTATIONS if k in schema}}


def _first_untransformable(node: object, where: Pointer) -> tuple[Pointer, object, str]:
    """The deepest subschema on the way down from ``node`` that the SDK's transform fails on, and why."""
    while True:
        for at, child in _transformed_children(node, where):
            if _transform_problem(child):
                node, where = child, at
                break
        else:
            return where, node, _transform_problem(node) or "the SDK could not transform it"


def _transformed_children(node: object, where: Pointer) -> Iterator[tuple[Pointer, object]]:
    """The subschemas the SDK's transform recurses into (named maps, combinators, items)."""
    if not isinstance(node, dict):
        return
    schema: JsonObject = node
    for key in ("$defs", "properties"):
        named = schema.get(key)
        if isinstance(named, dict):
            yield from (((*where, key, str(name)), sub) for name, sub in named.items())
    for key in ("anyOf", "oneOf", "allOf"):
        variants = schema.get(key)
        if isinstance(variants, list):
            yield from (((*where, key, str(i)), sub) for i, sub in enumerate(variants))
    if "items" in schema:
        yield (*where, "items"), schema["items"]


def _transform_problem(node: object) -> str:
    """Why the SDK's transform fails on ``node`` ("" if it does not)."""
    from anthropic import transform_schema

    try:
        transform_schema(node)  # pyright: ignore[reportArgumentType]  # any JSON value: finding what it refuses
    except AssertionError as exc:  # typing_extensions.assert_never: a value the SDK does not expect
        return f"{exc}; use one type of object, array, string, integer, number, boolean or null (anyOf for several)"
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return ""


def _check_depth(schema: JsonObject) -> None:
    """Refuse nesting deeper than ``MAX_SCHEMA_DEPTH`` (without recursing past it) and numbers JSON has not."""
    stack: list[tuple[object, int]] = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, float) and not math.isfinite(child):
                raise InputError(f"output_schema holds {child}, which is not a JSON number; use a finite bound")
            if isinstance(child, dict | list):
                if depth >= MAX_SCHEMA_DEPTH:
                    raise InputError(
                        f"output_schema is nested more than {MAX_SCHEMA_DEPTH} levels deep; flatten it "
                        "(move repeated parts into $defs)"
                    )
                stack.append((child, depth + 1))


def _check_references(schema: JsonObject) -> None:
    """Every ``$ref`` must point into the schema's own ``$defs``/``definitions``, with no loop."""
    found: list[tuple[Pointer, Pointer]] = []
    for where, node in _subschemas(schema, ()):
        for key in _ELSEWHERE:
            if key in node:
                raise InputError(
                    f"output_schema uses {key!r} at {_where(where)}; a schema must be self-contained: "
                    "no $id, $anchor or dynamic references, only $ref to #/$defs/..."
                )
        if "$schema" in node and node["$schema"] not in META_SCHEMAS:
            raise InputError(
                f"output_schema declares $schema {_short(node['$schema'])} at {_where(where)}; only JSON Schema "
                "2020-12 is supported: omit $schema"
            )
        if "$ref" in node:
            found.append((where, _target(node["$ref"], where, schema)))
    targets = {target for _, target in found}
    graph: dict[str, list[str]] = {_fragment(t): [] for t in targets}
    for where, target in found:  # a $ref inside a target makes that target lead to the $ref's target
        for n in range(len(where) + 1):
            if where[:n] in targets:
                graph[_fragment(where[:n])].append(_fragment(target))
    cycle = find_cycle(graph)
    if cycle:
        raise InputError(
            f"output_schema is recursive ({' -> '.join(_clip(c) for c in cycle[:10])}); "
            "recursive schemas are not supported: give the nesting a fixed depth"
        )


def _check_size(schema: JsonObject) -> None:
    """Refuse a schema that expands past ``MAX_SCHEMA_SIZE`` subschemas with its ``$ref``s resolved.

    Validating a reply visits each $ref's target anew, so a few $defs that each refer twice to the next
    cost 2**N steps on the event loop. Counted once per location (memoised; the $ref graph is acyclic).
    """
    sizes: dict[Pointer, int] = {}
    stack: list[tuple[Pointer, object, bool]] = [((), schema, False)]
    while stack:
        where, node, counted = stack.pop()
        if where in sizes:
            continue
        parts = _expanded_parts(node, where, schema)
        if not counted:
            stack.append((where, node, True))
            stack.extend((at, part, False) for at, part in parts if at not in sizes)
            continue
        size = 1 + sum(sizes[at] for at, _ in parts)
        if size > MAX_SCHEMA_SIZE:
            raise InputError(
                f"output_schema expands to more than {MAX_SCHEMA_SIZE:,} subschemas once its $refs are expanded "
                f"(at {_where(where)}: each $ref counts its target again); refer to shared $defs fewer times, "
                "e.g. not twice from each $def to the next"
            )
        sizes[where] = size


def _expanded_parts(node: object, where: Pointer, schema: JsonObject) -> list[tuple[Pointer, object]]:
    """What validating ``node`` walks: its subschemas in place (not its $defs) and its $ref's target."""
    if not isinstance(node, dict):
        return []
    current: JsonObject = node
    parts = [(at, sub) for at, sub in _children(current, where) if at[len(where)] not in ("$defs", "definitions")]
    if "$ref" in current:
        target = _target(current["$ref"], where, schema)
        parts.append((target, _resolve(schema, target)))
    return parts


def _children(schema: JsonObject, at: Pointer) -> Iterator[tuple[Pointer, object]]:
    """The values in schema position directly under ``schema`` (data values such as enums are skipped)."""
    for key, value in schema.items():
        if key in _NOT_SCHEMAS:
            continue
        if key in _NAMED and isinstance(value, dict):
            yield from (((*at, key, str(name)), sub) for name, sub in value.items())
        elif isinstance(value, dict):
            yield (*at, key), value
        elif isinstance(value, list):
            yield from (((*at, key, str(i)), sub) for i, sub in enumerate(value))


def _subschemas(node: object, where: Pointer) -> Iterator[tuple[Pointer, JsonObject]]:
    """Every subschema (a JSON object in schema position) with its location; data values are skipped."""
    stack: list[tuple[object, Pointer]] = [(node, where)]
    while stack:
        current, at = stack.pop()
        if not isinstance(current, dict):
            continue
        schema: JsonObject = current
        yield at, schema
        stack.extend((sub, child_at) for child_at, sub in _children(schema, at))


def _target(ref: object, where: Pointer, schema: JsonObject) -> Pointer:
    """The location ``ref`` points to, if it is local to ``schema`` and leads to a subschema."""
    if not isinstance(ref, str) or not LOCAL_REF.match(ref):
        raise InputError(
            f"output_schema has $ref {_short(ref)} at {_where(where)}; only references into the schema's own "
            '$defs are allowed (e.g. "#/$defs/item"): put the referenced schema there'
        )
    pointer = tuple(unquote(p).replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/"))
    if not isinstance(_resolve(schema, pointer), dict | bool):
        raise InputError(f"output_schema has $ref {_short(ref)} at {_where(where)}, which it does not define")
    return pointer


def _resolve(schema: JsonObject, pointer: Pointer) -> object:
    """What ``pointer`` leads to in ``schema`` (None if nothing)."""
    node: object = schema
    for part in pointer:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _fragment(pointer: Pointer) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer)


def _where(path: Iterable[object]) -> str:
    return "/".join(str(p) for p in path) or "(root)"


def _short(value: object) -> str:
    return _clip(repr(value))


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
