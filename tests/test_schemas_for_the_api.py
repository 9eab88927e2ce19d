"""An output schema is checked up front for what the API can take and what validation can afford.

A JSON Schema type list ("type": ["string", "null"]) goes to the API as the anyOf it means; a schema the
API's structured outputs cannot take, or whose $refs expand past ``MAX_SCHEMA_SIZE`` subschemas (validating
a reply would freeze the server), is refused before any model call, with what to change.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.anthropic_messages import message_params
from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject, ModelMessage, RunReport, SubagentResult
from subagent_mcp.errors import InputError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.schemas import MAX_SCHEMA_SIZE, check_output_schema
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeAnthropic, FakeRequest, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-schemas-for-the-api"
NULLABLE: JsonObject = {
    "type": "object",
    "properties": {"a": {"type": ["string", "null"], "maxLength": 5, "description": "a or nothing"}},
    "required": ["a"],
    "additionalProperties": False,
}


def settings_for(fake: FakeAnthropic, **overrides: Any) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr(KEY),
        anthropic_base_url=fake.base_url,
        retry_max_wait_s=0,
        db_path=":memory:",
        **overrides,
    )


def sent_schema(request: FakeRequest) -> Any:
    return request.body["output_config"]["format"]["schema"]


def doubling(n: int) -> JsonObject:
    """N $defs, each an allOf of two $refs to the next: ~1 KB of schema that expands to 2**N subschemas."""
    defs: JsonObject = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(n)}
    defs[f"d{n}"] = {"type": "string"}
    return {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/d0"}},
        "required": ["a"],
        "additionalProperties": False,
        "$defs": defs,
    }


# --- type lists --------------------------------------------------------------------------------------


async def test_run_subagent_sends_a_type_list_as_any_of_and_checks_the_reply_against_the_callers_schema() -> None:
    replies = [json_reply({"a": "toolong"}), json_reply({"a": None})]  # the first breaks maxLength: repaired
    async with (
        serve_fake_anthropic(lambda _: replies.pop(0), api_key=KEY) as fake,
        Client(create_server(settings_for(fake))) as c,
    ):
        result = await c.call_tool(
            "run_subagent", {"role": "writer", "instructions": "Say hi", "output_schema": NULLABLE}
        )
    assert not result.is_error, text_of(result)
    assert SubagentResult.model_validate(result.structured_content).output == {"a": None}
    sent = sent_schema(fake.message_requests[0])["properties"]["a"]
    assert [branch["type"] for branch in sent["anyOf"]] == ["string", "null"]
    assert "maxLength: 5" in sent["anyOf"][0]["description"]  # the SDK moves it to the string branch's text
    assert "toolong" in fake.message_requests[1].user_text  # validation used the caller's maxLength


async def test_a_plan_subtask_with_a_type_list_runs_live_and_in_batch_mode() -> None:
    plan = {
        "plan_id": "p-nullable",
        "task": "greet",
        "subtasks": [
            {"id": "one", "role": "writer", "instructions": "Say hi", "output_schema": NULLABLE},
            {"id": "two", "role": "writer", "instructions": "Say bye"},
        ],
    }

    def reply(request: FakeRequest) -> Any:
        if "Say hi" in request.user_text:
            return json_reply({"a": None})
        assert request.schema is not None
        return json_reply(sample_for_schema(request.schema))

    with anyio.fail_after(30):
        async with (
            serve_fake_anthropic(reply, api_key=KEY) as fake,
            Client(create_server(settings_for(fake, batch_poll_s=0.002))) as c,
        ):
            live = await c.call_tool("execute_plan", {"plan": plan})
            batched = await c.call_tool("execute_plan", {"plan": plan, "batch": True})
            runs = (await c.call_tool("list_runs", {})).structured_content
    for result in (live, batched):
        assert not result.is_error, text_of(result)
        report = RunReport.model_validate(result.structured_content)
        assert report.status == "succeeded", [(r.task_id, r.error) for r in report.results]
        assert report.results[0].output == {"a": None}
    assert runs is not None
    assert [r["status"] for r in runs["runs"]] == ["succeeded", "succeeded"]
    assert len(fake.batches.created) == 1


# --- what the API cannot take ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "message"),
    [
        ({}, "output_schema cannot be sent to the Anthropic API at properties/a: Schema must have a 'type'"),
        (True, "a boolean schema (true) at properties/a"),
        ({"type": "array", "items": False}, "a boolean schema (false) at properties/a/items"),
    ],
)
def test_a_schema_the_api_cannot_take_is_refused_saying_where_and_what_to_change(prop: object, message: str) -> None:
    schema = {"type": "object", "properties": {"a": prop}}
    with pytest.raises(InputError) as info:
        check_output_schema(schema)
    assert message in str(info.value)


def test_a_request_whose_schema_the_sdk_cannot_transform_is_an_input_error_not_a_crash() -> None:
    request = CompletionRequest(
        model="claude-haiku-5-5",
        system="",
        messages=[ModelMessage(role="user", content="x")],
        output_schema={"type": "object", "properties": {"a": {"type": "date"}}},  # no such JSON type
    )
    with pytest.raises(InputError) as info:
        message_params(request)
    assert "output_schema cannot be sent to the Anthropic API at properties/a: " in str(info.value)
    assert "use one type of object, array, string, integer, number, boolean or null" in str(info.value)


def test_a_schema_with_draft_7_definitions_is_sent_with_them_as_defs_and_its_refs_pointing_there() -> None:
    point: JsonObject = {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
    schema: JsonObject = {
        "type": "object",
        "properties": {"from": {"$ref": "#/definitions/point"}, "to": {"$ref": "#/definitions/point"}},
        "required": ["from", "to"],
        "definitions": {"point": point},
    }
    check_output_schema(schema)
    request = CompletionRequest(
        model="claude-haiku-5-5", system="", messages=[ModelMessage(role="user", content="x")], output_schema=schema
    )
    params: Any = message_params(request)
    sent = params["output_config"]["format"]["schema"]
    assert "definitions" not in sent
    assert sent["$defs"]["point"]["properties"]["x"]["type"] == "number"
    assert sent["properties"]["from"] == {"$ref": "#/$defs/point"}  # the SDK leaves refs as they are


async def test_run_subagent_refuses_an_untyped_property_before_any_call() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake, Client(create_server(settings_for(fake))) as c:
        schema = {"type": "object", "properties": {"a": {"description": "anything"}}}
        result = await c.call_tool("run_subagent", {"role": "writer", "instructions": "x", "output_schema": schema})
    assert result.is_error
    assert "at properties/a: Schema must have a 'type'" in text_of(result)
    assert "Traceback" not in text_of(result)
    assert fake.message_requests == []


# --- expansion ---------------------------------------------------------------------------------------


def test_a_schema_whose_refs_expand_exponentially_is_refused() -> None:
    with pytest.raises(InputError) as info:
        check_output_schema(doubling(30))
    assert f"more than {MAX_SCHEMA_SIZE:,} subschemas once its $refs are expanded" in str(info.value)


def test_a_schema_that_reuses_its_defs_within_the_bound_is_accepted() -> None:
    schema = doubling(8)  # 2**8 copies of the last $def: a few hundred subschemas
    assert check_output_schema(schema) == schema


async def test_run_subagent_refuses_an_exponential_schema_before_any_call_and_keeps_serving() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake, Client(create_server(settings_for(fake))) as c:
        with anyio.fail_after(10):  # validating a reply against it would take hours
            result = await c.call_tool(
                "run_subagent", {"role": "writer", "instructions": "x", "output_schema": doubling(30)}
            )
        fine = await c.call_tool("run_subagent", {"role": "writer", "instructions": "x"})
    assert result.is_error
    assert "once its $refs are expanded" in text_of(result)
    assert not fine.is_error, text_of(fine)
    assert len(fake.message_requests) == 1  # only the second call reached the API
