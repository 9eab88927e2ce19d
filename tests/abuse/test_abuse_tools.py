"""Fault and abuse through real MCP clients: arguments generated from each tool's published schema, and wrong shapes.

Every call must come back as a result or a tool error a person can read, and the server must answer the next
call. ``hypothesis-jsonschema`` would generate the valid arguments, but its object strategy uses a Hypothesis
internal that changed (0.23.1 fails on every object schema with hypothesis 6.170), so the keywords the tools
publish are covered here. ``SUBAGENT_MCP_ABUSE_EXAMPLES`` raises the examples per tool for a longer local run.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-SECRET-abuse-7731"
TOOLS = [
    "plan_task",
    "run_subagent",
    "execute_plan",
    "synthesize",
    "orchestrate",
    "wait_run",
    "cancel_run",
    "resume_run",
    "list_runs",
    "list_roles",
]
RUN_TOOLS = {"execute_plan", "orchestrate", "resume_run", "wait_run"}
CALL_LIMIT_S = 30
"""A call that takes longer is a hang: nothing here waits on a model for more than a few milliseconds."""

settings.register_profile(
    "abuse",
    max_examples=int(os.environ.get("SUBAGENT_MCP_ABUSE_EXAMPLES", "12")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ABUSE = settings.get_profile("abuse")
TALLY: Counter[str] = Counter()
"""Calls made, crashes and hangs, over every test of this module (printed at the end with ``-s``)."""

# --- argument strategies ---------------------------------------------------------------------------------------

JsonSchema = dict[str, Any]

MAX_CLIENT_DEPTH = 250
"""Deepest nesting the in-process MCP client can serialize (pydantic stops between 250 and 500 levels)."""

SURROGATES = st.sampled_from(["\ud800", "\udcff", "x\udfffy", "\ud83d"])
NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf"), -1, 0, -(10**30), 10**30, 10**400, 1e308, -0.0])
TEXT = st.text(max_size=40)  # any code point but a surrogate: unicode of every plane and category
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT

json_values: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def resolve(schema: JsonSchema, root: JsonSchema) -> JsonSchema:
    """``schema`` with a local ``$ref`` (``#/$defs/Name``) followed into ``root``."""
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return resolve(target, root)


def valid(schema: JsonSchema, root: JsonSchema | None = None) -> st.SearchStrategy[Any]:
    """Values ``schema`` accepts (the keywords pydantic publishes: type, anyOf, enum, pattern, ranges, ...)."""
    root = schema if root is None else root
    schema = resolve(schema, root)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([valid(option, root) for option in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([valid({**schema, "type": k}, root) for k in kind])
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(min_size=schema.get("minLength", 0), max_size=60)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(valid(schema.get("items", {}), root), max_size=3)
    if kind == "object" or "properties" in schema:
        return objects(schema, root)
    return json_values  # no type: anything


def objects(schema: JsonSchema, root: JsonSchema) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with every required property, some optional ones, and extra keys where the schema allows them."""
    props: dict[str, JsonSchema] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = st.fixed_dictionaries(
        {name: valid(sub, root) for name, sub in props.items() if name in required},
        optional={name: valid(sub, root) for name, sub in props.items() if name not in required},
    )
    if schema.get("additionalProperties") is not True:
        return fixed
    extra = st.dictionaries(TEXT.filter(lambda k: k not in props), json_values, max_size=3)
    return st.builds(lambda known, more: {**more, **known}, fixed, extra)


def nested(depth: int) -> Any:
    """A value ``depth`` levels deep: arrays and objects in turn around a string."""
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


hostile_values: st.SearchStrategy[Any] = st.one_of(
    SURROGATES,
    NUMBERS,
    st.integers(2, 20).map(lambda e: "x" * 10**e if e < 7 else "\u00e9" * 2**e),  # up to ~1 MB of text
    st.integers(1, MAX_CLIENT_DEPTH).map(nested),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),  # controls, RTL marks, astral planes
    st.sampled_from(["", " ", "\x00", "\u202e", "\ufeff", "💥" * 3, "null", "[]", "{}", "-1", "NaN"]),
    st.lists(SCALARS, max_size=3),
    st.dictionaries(TEXT, SCALARS | SURROGATES, max_size=3),  # a surrogate key: the client cannot send it
    json_values,
)
"""Wrong types, huge strings, deep nesting, lone surrogates, NaN, negative and enormous numbers, unicode."""


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (object keys and array indices), the root first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the part at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(copy[head], rest, new)
    return copy


@st.composite
def wrong(draw: st.DrawFn, schema: JsonSchema) -> dict[str, Any]:
    """Arguments the schema refuses or barely allows: a part replaced, a required key gone, or an extra key."""
    arguments: dict[str, Any] = draw(objects(resolve(schema, schema), schema))
    how = draw(st.sampled_from(["replace", "drop", "extra"]))
    required = [k for k in schema.get("required", []) if k in arguments]
    if how == "drop" and required:
        del arguments[draw(st.sampled_from(required))]
    elif how == "extra":
        arguments[draw(TEXT)] = draw(hostile_values)
    else:
        where = draw(st.sampled_from([p for p in paths(arguments) if p]) if arguments else st.just(()))
        arguments = replaced(arguments, where, draw(hostile_values)) if where else {draw(TEXT): draw(hostile_values)}
    return arguments


# --- the server under test ------------------------------------------------------------------------------------


def fake_model(request: FakeRequest) -> FakeReply:
    """The planner gets the demo plan; every other call a sample of whatever schema it was given."""
    if "Plan the user's task" in request.system_text:
        limit = (request.schema or {}).get("properties", {}).get("subtasks", {}).get("maxItems")
        return json_reply(demo_plan_draft(limit if isinstance(limit, int) else None))
    try:
        return json_reply(sample_for_schema(request.schema or {}))
    except (RecursionError, TypeError, ValueError, KeyError, IndexError):  # a schema too odd to sample
        return json_reply({"value": "unsampled"})


@dataclass
class Served:
    """One server, one client, the tools' published input schemas, and what has been called so far."""

    client: Client
    schemas: dict[str, dict[str, Any]]
    run_ids: list[str] = field(default_factory=list[str])
    plan_ids: list[str] = field(default_factory=list[str])


@pytest.fixture(params=["auto", "legacy"])
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncGenerator[Served]:
    """The server against the fake API, through ``Client(server)`` (2026) or ``mode="legacy"``; runs end after."""
    mode: Literal["auto", "legacy"] = request.param
    env = {
        "ANTHROPIC_API_KEY": KEY,
        "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
        "SUBAGENT_MCP_RETRY_MAX_WAIT_S": "0",
        "SUBAGENT_MCP_MAX_RETRIES": "0",
    }
    async with serve_fake_anthropic(fake_model, api_key=KEY) as fake:
        s = Settings.from_env({**env, "ANTHROPIC_BASE_URL": fake.base_url}, env_file=None)
        async with Client(create_server(s), mode=mode) as client:
            with anyio.fail_after(CALL_LIMIT_S):
                tools = (await client.list_tools()).tools
            here = Served(client, {t.name: t.input_schema for t in tools})
            yield here
            await end_every_run(here)


async def end_every_run(here: Served) -> None:
    """Cancel whatever generated runs are still going, and check that none is left running."""
    with anyio.fail_after(CALL_LIMIT_S):
        for run in await listed_runs(here.client):
            if run["status"] == "running":
                await here.client.call_tool("cancel_run", {"run_id": run["run_id"]})  # may have just ended: either
        left = [run["run_id"] for run in await listed_runs(here.client) if run["status"] == "running"]
    assert left == [], f"runs still running after cancel_run: {left}"


async def listed_runs(client: Client) -> list[dict[str, Any]]:
    result = await client.call_tool("list_runs", {"limit": 500})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content["runs"]


# --- what every answer must be ---------------------------------------------------------------------------------

BARE_ERROR = re.compile(r"^Error executing tool \w+$")
UNREADABLE = ("Traceback", "For further information visit", "errors.pydantic.dev", 'File "', KEY)


def problems_with(result: CallToolResult) -> list[str]:
    """Why ``result`` is not a plain answer or a readable tool error (empty when it is one)."""
    text = text_of(result).strip()
    found = [f"holds {marker!r}" for marker in UNREADABLE if marker in text]
    if not text:
        found.append("has no text")
    if result.is_error and BARE_ERROR.match(text):
        found.append("is the SDK's bare crash message (an unexpected exception in the tool)")
    if result.is_error and not re.search(r"[a-z]{3,} [a-z]{2,}", text):
        found.append("is not a sentence")
    if not result.is_error and result.structured_content is None:
        found.append("is a result without structured content")
    return found


async def call_and_check(here: Served, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """Call ``tool``; fail (and count it) on a crash, a hang or an unreadable answer; then check the server answers."""
    TALLY["cases"] += 1
    try:
        with anyio.fail_after(CALL_LIMIT_S):
            result = await here.client.call_tool(tool, arguments)
    except TimeoutError:
        TALLY["hangs"] += 1
        raise AssertionError(f"{tool} gave no answer within {CALL_LIMIT_S} s") from None
    except Exception as exc:  # a JSON-RPC error, or a result the client could not accept
        TALLY["crashes"] += 1
        raise AssertionError(f"{tool} did not answer with a result: {type(exc).__name__}: {exc}") from exc
    if found := problems_with(result):
        TALLY["crashes"] += 1
        raise AssertionError(f"{tool}'s answer {', '.join(found)}: {text_of(result)[:500]!r}")
    try:
        with anyio.fail_after(CALL_LIMIT_S):
            runs = await listed_runs(here.client)
    except TimeoutError:
        TALLY["hangs"] += 1
        raise AssertionError(f"after {tool}, list_runs gave no answer within {CALL_LIMIT_S} s") from None
    here.run_ids[:] = [r["run_id"] for r in runs]
    here.plan_ids[:] = sorted({r["plan_id"] for r in runs})
    return result


def bounded(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with any acceptable ``wait_s`` made 0, so no generated call waits on its run."""
    wait = arguments.get("wait_s")
    if tool in RUN_TOOLS and isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 86_400:
        return {**arguments, "wait_s": 0}
    return arguments


def with_known_ids(draw: st.DrawFn, here: Served, arguments: dict[str, Any]) -> dict[str, Any]:
    """Sometimes point ``run_id`` / ``plan_id`` at one that exists, so the tools get past "no such run"."""
    for key, known in (("run_id", here.run_ids), ("plan_id", here.plan_ids)):
        use, pick = draw(st.booleans()), draw(st.integers(0, 2**16))  # drawn whatever exists: replayable
        if isinstance(arguments.get(key), str) and known and use:
            arguments = {**arguments, key: known[pick % len(known)]}
    return arguments


# --- the tests -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def tally() -> Iterator[Counter[str]]:
    yield TALLY
    print(f"\nabuse through MCP clients: {TALLY['cases']} cases, {TALLY['crashes']} crashes, {TALLY['hangs']} hangs")


async def test_every_tool_is_published_with_an_object_schema(served: Served) -> None:
    """The generated cases below cover every tool; a new tool joins them by being listed here."""
    assert sorted(served.schemas) == sorted(TOOLS)
    assert all(schema["type"] == "object" for schema in served.schemas.values())


def arguments_for(here: Served, tool: str, kind: Literal["valid", "wrong"]) -> st.SearchStrategy[dict[str, Any]]:
    schema = here.schemas[tool]
    shapes = valid(schema) if kind == "valid" else wrong(schema)
    return st.composite(lambda draw: bounded(tool, with_known_ids(draw, here, draw(shapes))))()


async def run_examples(here: Served, tool: str, kind: Literal["valid", "wrong"]) -> None:
    """Hypothesis draws in a worker thread and sends each call to this event loop, where the server lives."""

    @ABUSE
    @given(arguments=arguments_for(here, tool, kind))
    def examples(arguments: dict[str, Any]) -> None:
        anyio.from_thread.run(call_and_check, here, tool, arguments)

    await anyio.to_thread.run_sync(examples)


@pytest.mark.parametrize("tool", TOOLS)
async def test_arguments_the_published_schema_allows_get_a_result_or_a_readable_error(
    served: Served, tool: str
) -> None:
    await run_examples(served, tool, "valid")


@pytest.mark.parametrize("tool", TOOLS)
async def test_wrong_shapes_get_a_readable_tool_error_and_the_server_serves_on(served: Served, tool: str) -> None:
    await run_examples(served, tool, "wrong")


@pytest.mark.parametrize("tool", TOOLS)
async def test_a_lone_surrogate_in_any_string_argument_is_named_in_a_tool_error(served: Served, tool: str) -> None:
    """In-process clients can send one (no JSON parser would); it used to crash tools as a bare error."""
    schema = served.schemas[tool]
    texts = [name for name, sub in schema["properties"].items() if string_allowed(resolve(sub, schema))]
    required = {name: "x" for name in schema.get("required", [])}
    wait = {"wait_s": 0} if tool in RUN_TOOLS else {}
    for name in [*texts, "unknown_extra"]:
        result = await call_and_check(served, tool, {**required, **wait, name: "odd \udcff"})
        assert result.is_error
        assert f"- {name}: holds U+DCFF, a lone surrogate that is not valid Unicode text" in text_of(result)


@pytest.mark.parametrize("tool", TOOLS)
async def test_a_number_too_large_for_a_float_gets_a_readable_tool_error(served: Served, tool: str) -> None:
    """``10**400`` is a valid JSON integer; formatting it as a float used to raise OverflowError mid-check."""
    schema = served.schemas[tool]
    numbers = [name for name, sub in schema["properties"].items() if number_allowed(resolve(sub, schema))]
    required = {name: "x" for name in schema.get("required", [])}
    for name in numbers:
        result = await call_and_check(served, tool, {**required, name: 10**400})  # no bare crash, no hang
        assert result.is_error


def number_allowed(schema: dict[str, Any]) -> bool:
    kinds = {schema.get("type"), *(o.get("type") for o in schema.get("anyOf", []))}
    return bool(kinds & {"integer", "number"})


def string_allowed(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" or any(o.get("type") == "string" for o in schema.get("anyOf", []))
