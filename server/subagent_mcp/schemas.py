"""The one policy every output schema a caller supplies must pass, and a validator that never fetches.

A schema must be self-contained: its only ``$ref``s point into its own ``$defs`` (or
``definitions``), none loops back on itself, and it nests at most ``MAX_SCHEMA_DEPTH`` levels.
Otherwise jsonschema would fetch URLs or read local files named in a ``$ref`` (and quote them in
errors), or recurse until the stack runs out. The validator refuses retrieval even for a path
this check missed.
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
    try:
        Draft202012Validator.check_schema(checked)
    except SchemaError as exc:
        raise InputError(f"output_schema is not a valid JSON Schema at {_where(exc.path)}: {exc.message}") from None
    if checked.get("type") != "object":
        raise InputError('output_schema must describe an object: set "type": "object" at its root')
    return checked


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


def _subschemas(node: object, where: Pointer) -> Iterator[tuple[Pointer, JsonObject]]:
    """Every subschema (a JSON object in schema position) with its location; data values are skipped."""
    stack: list[tuple[object, Pointer]] = [(node, where)]
    while stack:
        current, at = stack.pop()
        if not isinstance(current, dict):
            continue
        schema: JsonObject = current
        yield at, schema
        for key, value in schema.items():
            if key in _NOT_SCHEMAS:
                continue
            if key in _NAMED and isinstance(value, dict):
                stack.extend((sub, (*at, key, str(name))) for name, sub in value.items())
            elif isinstance(value, dict):
                stack.append((value, (*at, key)))
            elif isinstance(value, list):
                stack.extend((sub, (*at, key, str(i))) for i, sub in enumerate(value))


def _target(ref: object, where: Pointer, schema: JsonObject) -> Pointer:
    """The location ``ref`` points to, if it is local to ``schema`` and leads to a subschema."""
    if not isinstance(ref, str) or not LOCAL_REF.match(ref):
        raise InputError(
            f"output_schema has $ref {_short(ref)} at {_where(where)}; only references into the schema's own "
            '$defs are allowed (e.g. "#/$defs/item"): put the referenced schema there'
        )
    pointer = tuple(unquote(p).replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/"))
    node: object = schema
    for part in pointer:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = None
            break
    if not isinstance(node, dict | bool):
        raise InputError(f"output_schema has $ref {_short(ref)} at {_where(where)}, which it does not define")
    return pointer


def _fragment(pointer: Pointer) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer)


def _where(path: Iterable[object]) -> str:
    return "/".join(str(p) for p in path) or "(root)"


def _short(value: object) -> str:
    return _clip(repr(value))


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
