"""Output schemas are self-contained: a $ref never fetches a URL or reads a file, and bad ones are refused."""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pydantic import BaseModel, SecretStr
from referencing.exceptions import Unresolvable

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.contracts import JsonObject, Plan, RunReport, Subtask
from subagent_mcp.errors import InputError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.run_options import RunOptions
from subagent_mcp.schemas import MAX_SCHEMA_DEPTH, check_output_schema, validator
from subagent_mcp.settings import Settings
from subagent_mcp.store import Store
from subagent_mcp.structured import schema_errors
from subagent_mcp.testing import json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

SECRET = "TOP-SECRET-4f1c"


@contextmanager
def schema_host() -> Generator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that serves a schema and records every request it gets."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = b'{"enum": ["' + SECRET.encode() + b'"]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/s.json", requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secret.json"
    path.write_text('{"enum": ["' + SECRET + '"]}')
    return path.as_uri()


def with_ref(ref: object) -> JsonObject:
    return {
        "type": "object",
        "properties": {"a": {"$ref": ref}},
        "required": ["a"],
        "additionalProperties": False,
    }


def with_defs(defs: JsonObject, ref: str = "#/$defs/item") -> JsonObject:
    return {**with_ref(ref), "$defs": defs}


# --- the policy ------------------------------------------------------------------------------------


class Item(BaseModel):
    name: str


class Basket(BaseModel):
    items: list[Item]
    best: Item | None = None


@pytest.mark.parametrize(
    "schema",
    [
        with_defs({"item": {"type": "string"}}),
        {**with_ref("#/definitions/item"), "definitions": {"item": {"type": "string"}}},
        with_defs({"item": {"type": "object", "properties": {"n": {"$ref": "#/$defs/n"}}}, "n": {"type": "integer"}}),
        Basket.model_json_schema(),  # pydantic's own $defs and $refs
        {"type": "object", "properties": {"$ref": {"type": "string"}}},  # a property that happens to be named $ref
        {
            "type": "object",
            "properties": {"a": {"type": "object", "const": {"$ref": "http://example.com/not-a-reference"}}},
        },
        {**with_defs({"item": {"type": "string"}}), "$schema": "https://json-schema.org/draft/2020-12/schema"},
    ],
)
def test_self_contained_schemas_are_accepted(schema: JsonObject) -> None:
    assert check_output_schema(schema) == schema


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (with_ref("http://127.0.0.1:9/s.json"), "only references into the schema's own $defs are allowed"),
        (with_ref("file:///etc/passwd"), "$ref 'file:///etc/passwd' at properties/a; only references into"),
        (with_ref("other.json#/$defs/item"), "only references into the schema's own $defs"),
        (with_ref("#"), "$ref '#' at properties/a; only references into"),
        (with_ref("#/properties/b"), "only references into the schema's own $defs"),
        (with_ref(7), "$ref 7 at properties/a"),
        (with_defs({}, "#/$defs/ghost"), "$ref '#/$defs/ghost' at properties/a, which it does not define"),
        (with_defs({"item": 3}), "$ref '#/$defs/item' at properties/a, which it does not define"),
        (with_defs({"item": {"$ref": "#/$defs/item"}}), r"recursive (#/$defs/item -> #/$defs/item)"),
        (
            with_defs({"item": {"allOf": [{"$ref": "#/$defs/other"}]}, "other": {"$ref": "#/$defs/item"}}),
            "output_schema is recursive",
        ),
        (
            with_defs({"item": {"type": "object", "properties": {"child": {"$ref": "#/$defs/item"}}}}),
            "recursive schemas are not supported",
        ),
        (with_defs({"item": {"type": "string", "$id": "http://example.com/x"}}), "uses '$id' at $defs/item"),
        (with_defs({"item": {"$anchor": "it"}}), "uses '$anchor'"),
        (with_ref("#/$defs/item") | {"$dynamicRef": "#meta"}, "uses '$dynamicRef' at (root)"),
        (
            {**with_defs({"item": {"type": "string"}}), "$schema": "http://json-schema.org/draft-04/schema#"},
            "only JSON Schema 2020-12 is supported",
        ),
        (
            {"type": "object", "$defs": {"unused": {"$ref": "https://example.com/s.json"}}},
            "at $defs/unused; only references into",
        ),
    ],
)
def test_references_outside_the_schema_and_loops_are_refused_with_a_reason(schema: JsonObject, message: str) -> None:
    with pytest.raises(InputError) as info:
        check_output_schema(schema)
    assert message in str(info.value)


def test_a_deeply_nested_schema_is_refused_without_exhausting_the_stack() -> None:
    deep: JsonObject = {"type": "string"}
    for _ in range(5_000):
        deep = {"type": "object", "properties": {"x": deep}}
    with pytest.raises(InputError, match=f"nested more than {MAX_SCHEMA_DEPTH} levels deep"):
        check_output_schema(deep)


def test_a_schema_at_the_depth_limit_is_accepted() -> None:
    schema: JsonObject = {"type": "string"}
    while True:  # each level adds two: the schema object and its properties object
        deeper: JsonObject = {"type": "object", "properties": {"x": schema}}
        try:
            check_output_schema(deeper)
        except InputError:
            break
        schema = deeper
    assert schema["type"] == "object"


def test_the_validator_never_retrieves_even_a_reference_the_policy_would_refuse() -> None:
    with schema_host() as (url, requests):
        with pytest.raises(Unresolvable):
            list(validator(with_ref(url)).iter_errors({"a": "x"}))
        with pytest.raises(InputError, match="which is not in the schema"):
            schema_errors({"a": "x"}, with_ref(url))
    assert requests == []


# --- through the tools -----------------------------------------------------------------------------


async def test_run_subagent_refuses_a_remote_or_file_ref_before_any_request_and_shows_no_content(
    secret_file: str,
) -> None:
    with schema_host() as (url, fetched):
        async with serve_fake_anthropic(lambda _: json_reply({"a": "x"}), api_key="sk-ant-test") as fake:
            settings = Settings(
                anthropic_api_key=SecretStr("sk-ant-test"), anthropic_base_url=fake.base_url, db_path=":memory:"
            )
            async with Client(create_server(settings)) as c:
                results = [
                    await c.call_tool(
                        "run_subagent", {"role": "writer", "instructions": "x", "output_schema": with_ref(ref)}
                    )
                    for ref in (url, secret_file)
                ]
    assert fetched == []
    assert fake.message_requests == []
    for result, ref in zip(results, (url, secret_file), strict=True):
        assert result.is_error
        assert f"output_schema has $ref {ref!r} at properties/a" in text_of(result)
        assert SECRET not in text_of(result)
        assert SECRET not in str(result.structured_content)


async def test_a_plan_whose_subtask_schema_refers_outside_itself_is_refused_before_any_call(secret_file: str) -> None:
    backend = ScriptedBackend(lambda _: {"a": "x"})
    with schema_host() as (url, fetched):
        async with Client(create_server(Settings.from_env({}, env_file=None, db_path=":memory:"), backend)) as c:
            results = [
                await c.call_tool(
                    "execute_plan",
                    {
                        "plan": {
                            "plan_id": "p-ref",
                            "task": "t",
                            "subtasks": [
                                {"id": "a", "role": "writer", "instructions": "x", "depends_on": []},
                                {
                                    "id": "b",
                                    "role": "writer",
                                    "instructions": "y",
                                    "depends_on": ["a"],
                                    "output_schema": schema,
                                },
                            ],
                        }
                    },
                )
                for schema in (with_ref(url), with_ref(secret_file), with_defs({"item": {"$ref": "#/$defs/item"}}))
            ]
    assert fetched == []
    assert backend.seen == []
    texts = [text_of(r) for r in results]
    assert all(r.is_error for r in results)
    assert f"subtask b: output_schema has $ref {url!r}" in texts[0]
    assert f"subtask b: output_schema has $ref {secret_file!r}" in texts[1]
    assert "subtask b: output_schema is recursive" in texts[2]
    assert all(SECRET not in t for t in texts)


async def test_an_unresolvable_or_self_referencing_ref_is_a_clear_tool_error_and_the_server_keeps_serving() -> None:
    backend = ScriptedBackend(lambda _: {"a": "x"})
    async with Client(create_server(Settings.from_env({}, env_file=None, db_path=":memory:"), backend)) as c:
        ghost = await c.call_tool(
            "run_subagent", {"role": "writer", "instructions": "x", "output_schema": with_defs({}, "#/$defs/ghost")}
        )
        loop = await c.call_tool(
            "run_subagent",
            {"role": "writer", "instructions": "x", "output_schema": with_defs({"item": {"$ref": "#/$defs/item"}})},
        )
        fine = await c.call_tool(
            "run_subagent",
            {"role": "writer", "instructions": "x", "output_schema": with_defs({"item": {"type": "string"}})},
        )
    assert ghost.is_error
    assert "$ref '#/$defs/ghost' at properties/a, which it does not define" in text_of(ghost)
    assert loop.is_error
    assert "output_schema is recursive" in text_of(loop)
    assert not fine.is_error, text_of(fine)
    assert len(backend.seen) == 1  # only the good schema reached a model


async def test_a_planner_draft_cannot_bring_an_output_schema_at_all() -> None:
    drafts = iter(
        [
            {
                "subtasks": [
                    {
                        "id": "a",
                        "role": "writer",
                        "instructions": "x",
                        "depends_on": [],
                        "output_schema": with_ref("file:///etc/passwd"),
                    }
                ],
            },
            {"subtasks": [{"id": "a", "role": "writer", "instructions": "x", "depends_on": []}]},
        ]
    )
    backend = ScriptedBackend(lambda _: next(drafts))
    async with Client(create_server(Settings.from_env({}, env_file=None, db_path=":memory:"), backend)) as c:
        result = await c.call_tool("plan_task", {"task": "anything"})
    assert not result.is_error, text_of(result)
    assert len(backend.seen) == 2
    assert "('output_schema' was unexpected)" in backend.seen[1].messages[-1].content
    assert Plan.model_validate(result.structured_content).subtasks[0].output_schema is None


async def test_resuming_a_run_whose_stored_plan_refers_outside_its_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    legacy = Plan(  # stored by a version without the schema policy
        plan_id="p-legacy",
        task="t",
        subtasks=[Subtask(id="a", role="writer", instructions="x", output_schema=with_ref("file:///etc/passwd"))],
    )
    async with Store.open(db) as store:
        await store.save_plan(legacy)
        await store.create_run(
            "run-legacy",
            legacy.plan_id,
            RunOptions(max_concurrency=1, task_timeout_s=60, run_timeout_s=60),
        )
        await store.finish_run(
            "run-legacy", RunReport(run_id="run-legacy", plan_id="p-legacy", status="failed", results=[])
        )
    backend = ScriptedBackend(lambda _: {"a": "x"})
    async with Client(create_server(Settings.from_env({}, env_file=None, db_path=str(db)), backend)) as c:
        result = await c.call_tool("resume_run", {"run_id": "run-legacy"})
    assert result.is_error
    assert "subtask a: output_schema has $ref 'file:///etc/passwd'" in text_of(result)
    assert backend.seen == []


@pytest.mark.parametrize("bound", [math.nan, math.inf, -math.inf])
def test_a_bound_that_is_not_a_json_number_is_refused(bound: float) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "number", "maximum": bound}}}
    with pytest.raises(InputError, match="which is not a JSON number; use a finite bound"):
        check_output_schema(schema)
