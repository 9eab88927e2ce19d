"""Stored plans and runs through a real MCP client: resources, list_runs and resume_run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.types import TextResourceContents

from subagent_mcp.backends.scripted import ScriptedBackend, sample_for_schema
from subagent_mcp.background import MAX_SHOWN_ID
from subagent_mcp.contracts import Completion, CompletionRequest, JsonObject, OrchestrateResult, RunReport, Usage
from subagent_mcp.core.context import estimate_tokens
from subagent_mcp.errors import ModelRequestError, ModelUnavailableError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

PLAN: JsonObject = {
    "plan_id": "p-res",
    "task": "Write a report",
    "subtasks": [
        {"id": "a", "role": "writer", "instructions": "part a", "depends_on": []},
        {"id": "b", "role": "writer", "instructions": "part b", "depends_on": ["a"]},
        {"id": "c", "role": "writer", "instructions": "part c", "depends_on": []},
    ],
}


def server(backend: ScriptedBackend, db: Path) -> Any:
    return create_server(Settings.from_env({}, env_file=None, db_path=str(db)), backend)


async def read_json(client: Client, uri: str) -> Any:
    contents = (await client.read_resource(uri)).contents[0]
    assert isinstance(contents, TextResourceContents)
    assert contents.mime_type == "application/json"
    return json.loads(contents.text)


async def test_runs_and_plans_are_listed_and_readable_as_resources(tmp_path: Path) -> None:
    async with Client(server(ScriptedBackend(), tmp_path / "runs.db")) as c:
        run = RunReport.model_validate((await c.call_tool("execute_plan", {"plan": PLAN})).structured_content)
        listed = [str(r.uri) for r in (await c.list_resources()).resources]
        templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
        recent = await read_json(c, "subagent://runs")
        one = await read_json(c, f"subagent://runs/{run.run_id}")
        plan = await read_json(c, "subagent://plans/p-res")
    assert "subagent://runs" in listed
    assert set(templates) == {"subagent://runs/{run_id}", "subagent://plans/{plan_id}"}
    assert recent["runs"][0]["run_id"] == run.run_id
    assert recent["runs"][0]["counts"] == {"succeeded": 3}
    assert one["status"] == "succeeded"
    assert set(one["results"]) == {"a", "b", "c"}
    assert one["report"]["run_id"] == run.run_id
    assert plan["subtasks"][1]["depends_on"] == ["a"]


async def test_reading_an_unknown_id_is_a_clear_error(tmp_path: Path) -> None:
    async with Client(server(ScriptedBackend(), tmp_path / "runs.db")) as c:
        with pytest.raises(MCPError, match="no run with id 'run-nope' is stored"):
            await c.read_resource("subagent://runs/run-nope")
        with pytest.raises(MCPError, match="no plan 'p-nope' is stored"):
            await c.read_resource("subagent://plans/p-nope")


async def test_a_long_unknown_id_is_cut_in_the_error_like_a_run_id(tmp_path: Path) -> None:
    long_id = "z" * 5000
    async with Client(server(ScriptedBackend(), tmp_path / "runs.db")) as c:
        with pytest.raises(MCPError) as plan_error:
            await c.read_resource(f"subagent://plans/{long_id}")
        with pytest.raises(MCPError) as run_error:
            await c.read_resource(f"subagent://runs/{long_id}")
        by_id = await c.call_tool("execute_plan", {"plan_id": long_id})
    cut = repr("z" * MAX_SHOWN_ID + "…")
    assert f"no plan {cut} is stored" in str(plan_error.value)
    assert f"no run with id {cut} is stored" in str(run_error.value)
    assert by_id.is_error
    assert f"no plan with id {cut} is stored" in text_of(by_id)
    assert all(len(text) < 300 for text in (str(plan_error.value), str(run_error.value), text_of(by_id)))


async def test_list_runs_shows_the_newest_first(tmp_path: Path) -> None:
    async with Client(server(ScriptedBackend(), tmp_path / "runs.db")) as c:
        first = (await c.call_tool("execute_plan", {"plan": PLAN})).structured_content
        second = (await c.call_tool("execute_plan", {"plan_id": "p-res"})).structured_content
        listed = await c.call_tool("list_runs", {"limit": 5})
        bad = await c.call_tool("list_runs", {"limit": 0})
    assert first is not None
    assert second is not None
    assert listed.structured_content is not None
    assert [r["run_id"] for r in listed.structured_content["runs"]] == [second["run_id"], first["run_id"]]
    assert bad.is_error
    assert "limit must be between 1 and 500" in text_of(bad)


async def test_resume_reruns_only_what_did_not_succeed_and_survives_a_server_restart(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    calls: list[str] = []
    outage = True

    def flaky(request: CompletionRequest) -> JsonObject:
        calls.append(request.label)
        if request.label == "a" and outage:
            raise ModelUnavailableError("Anthropic API unavailable: overloaded (529) on all 4 attempts")
        return sample_for_schema(request.output_schema)

    backend = ScriptedBackend(flaky)
    async with Client(server(backend, db)) as c:
        first = RunReport.model_validate((await c.call_tool("execute_plan", {"plan": PLAN})).structured_content)
    assert {r.task_id: r.status for r in first.results} == {"a": "failed", "b": "skipped", "c": "succeeded"}

    outage = False
    calls.clear()
    async with Client(server(backend, db)) as c:  # a new server process would open the same file
        resumed = await c.call_tool("resume_run", {"run_id": first.run_id})
    assert not resumed.is_error, text_of(resumed)
    report = RunReport.model_validate(resumed.structured_content)
    assert sorted(calls) == ["a", "b"]  # c had succeeded and was never requested again
    assert report.run_id == first.run_id
    assert report.status == "succeeded"
    assert [r.task_id for r in report.results] == ["a", "b", "c"]


async def test_resuming_an_unknown_run_says_so(tmp_path: Path) -> None:
    async with Client(server(ScriptedBackend(), tmp_path / "runs.db")) as c:
        result = await c.call_tool("resume_run", {"run_id": "run-ghost"})
    assert result.is_error
    assert "no run with id 'run-ghost' is stored; list_runs" in text_of(result)
    assert str(tmp_path) not in text_of(result)  # no database path


async def test_a_cancelled_run_is_stored_as_cancelled_and_can_be_resumed(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    started = anyio.Event()
    hold = True

    async def reply(request: CompletionRequest) -> JsonObject:
        if request.label == "a" and hold:
            started.set()
            await anyio.sleep_forever()
        return sample_for_schema(request.output_schema)

    async with Client(server(ScriptedBackend(reply), db)) as c:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.call_tool, "execute_plan", {"plan": PLAN})
                await started.wait()
                tg.cancel_scope.cancel()
        recent = await read_json(c, "subagent://runs")
        run_id = recent["runs"][0]["run_id"]
        assert recent["runs"][0]["status"] == "cancelled"
        hold = False
        resumed = RunReport.model_validate((await c.call_tool("resume_run", {"run_id": run_id})).structured_content)
    assert resumed.status == "succeeded"


async def test_a_huge_run_result_is_shrunk_for_the_host_but_stored_whole(tmp_path: Path) -> None:
    def verbose(request: CompletionRequest) -> JsonObject:
        return {"summary": "long", "text": "word " * 12_000}  # ~60k characters per subtask

    wide: JsonObject = {
        "plan_id": "p-wide",
        "task": "Write a lot",
        "subtasks": [{"id": f"w{i}", "role": "writer", "instructions": "go", "depends_on": []} for i in range(6)],
    }
    async with Client(server(ScriptedBackend(verbose), tmp_path / "runs.db")) as c:
        result = await c.call_tool("execute_plan", {"plan": wide})
        assert result.structured_content is not None
        stored = await read_json(c, f"subagent://runs/{result.structured_content['run_id']}")
    report = RunReport.model_validate(result.structured_content)  # still matches the tool's schema
    assert estimate_tokens(json.dumps(result.structured_content)) + estimate_tokens(text_of(result)) < 20_000
    assert "6 subtask output(s) were shortened" in text_of(result)
    assert f"subagent://runs/{report.run_id}" in text_of(result)
    assert all(len(r["output"]["text"]) == len("word " * 12_000) for r in stored["results"].values())


async def test_a_plan_id_that_is_not_a_safe_name_is_refused_and_an_edited_long_id_stays_readable(
    tmp_path: Path,
) -> None:
    backend = ScriptedBackend()
    long_id = "p" * 100
    edited = {**PLAN, "plan_id": long_id, "task": "Write a longer report"}
    async with Client(server(backend, tmp_path / "runs.db")) as c:
        traversal = await c.call_tool("execute_plan", {"plan": {**PLAN, "plan_id": "../../etc/passwd"}})
        assert traversal.is_error
        assert "is not a usable id" in text_of(traversal)
        assert backend.seen == []
        await c.call_tool("execute_plan", {"plan": {**PLAN, "plan_id": long_id}})
        run = RunReport.model_validate((await c.call_tool("execute_plan", {"plan": edited})).structured_content)
        assert run.plan_id != long_id  # an edited plan is kept under a fresh id, within the limit
        assert (await read_json(c, f"subagent://plans/{run.plan_id}"))["task"] == "Write a longer report"


async def test_a_result_stays_within_what_hosts_accept_at_any_plan_size_failures_kept_first(tmp_path: Path) -> None:
    def some_fail(request: CompletionRequest) -> JsonObject:
        if request.label.endswith("7"):
            raise ModelRequestError("Anthropic API rejected the request (400 invalid_request_error): " + "why " * 50)
        return sample_for_schema(request.output_schema)

    size = 2_000
    huge: JsonObject = {
        "plan_id": "p-huge",
        "task": "Many small things",
        "subtasks": [{"id": f"t{i}", "role": "writer", "instructions": "go", "depends_on": []} for i in range(size)],
    }
    settings = Settings.from_env({}, env_file=None, db_path=str(tmp_path / "runs.db"), max_plan_subtasks=size)
    async with Client(create_server(settings, ScriptedBackend(some_fail))) as c:
        result = await c.call_tool("execute_plan", {"plan": huge, "max_concurrency": 64})
    report = RunReport.model_validate(result.structured_content)  # still matches the tool's schema
    assert estimate_tokens(json.dumps(result.structured_content)) + estimate_tokens(text_of(result)) < 20_000
    assert report.results_omitted + len(report.results) == size
    assert report.results_omitted > 0
    assert {r.status for r in report.results} == {"failed"}  # failures kept first: 200 of them fill the room
    assert set(report.graph) == {r.task_id for r in report.results}  # the graph shrinks with the results
    assert f"{report.results_omitted} result(s) were left out" in text_of(result)
    assert "1800 succeeded, 200 failed" in text_of(result)  # the text counts every result, listing only some
    assert "more subtasks (succeeded) not listed here" in text_of(result)


async def test_the_run_resource_breaks_cost_down_per_subtask_and_model_summing_to_the_runs_total(
    tmp_path: Path,
) -> None:
    draft = {
        "subtasks": [
            {"id": "facts", "role": "researcher", "instructions": "list facts", "depends_on": [], "tier": "fast"},
            {"id": "weigh", "role": "analyst", "instructions": "weigh them", "depends_on": ["facts"], "tier": "deep"},
        ],
    }

    def reply(request: CompletionRequest) -> Any:
        if request.label == "plan":
            return draft
        text = json.dumps(sample_for_schema(request.output_schema))
        usage = Usage(input_tokens=400, output_tokens=100, cache_read_tokens=2_000 if request.label == "weigh" else 0)
        return Completion(text=text, usage=usage, model=request.model)

    settings = Settings.from_env({}, env_file=None, db_path=str(tmp_path / "runs.db"))
    async with Client(create_server(settings, ScriptedBackend(reply))) as c:
        done = await c.call_tool("orchestrate", {"task": "Decide"})
        assert not done.is_error, text_of(done)
        outcome = OrchestrateResult.model_validate(done.structured_content)
        record = await read_json(c, f"subagent://runs/{outcome.report.run_id}")
    breakdown = record["cost_breakdown"]
    assert [(line["label"], line["model"]) for line in breakdown["subtasks"]] == [
        ("facts", settings.subagent_model),
        ("weigh", settings.planner_model),  # deep defaults to the planner model
    ]
    assert {line["model"] for line in breakdown["models"]} == {settings.subagent_model, settings.planner_model}
    assert breakdown["planning"]["cost_usd"] == record["planning"]["cost_usd"] > 0
    assert breakdown["synthesis"]["cost_usd"] == record["synthesis_spend"]["cost_usd"] > 0
    assert breakdown["total"]["cost_usd"] == pytest.approx(outcome.total.cost_usd)
    assert breakdown["total"]["usage"] == outcome.total.usage.model_dump()
    assert breakdown["subtasks"][1]["usage"]["cache_read_tokens"] == 2_000
    assert breakdown["total"]["cache_saved_usd"] == pytest.approx(
        2_000 * (4.0 - 0.2) / 1_000_000
    )  # Opus 5.5: $4 input, $0.20 read
