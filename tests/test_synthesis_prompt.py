"""The synthesizer answers from the results: a long task (a pasted document) reaches it cut, with a note, and
a result that later subtasks used reaches it by its summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from subagent_mcp.contracts import Plan, Synthesis
from subagent_mcp.core.estimate import SUMMARY_TOKENS
from subagent_mcp.planning import estimate_plan
from subagent_mcp.prompts import BY_SUMMARY_NOTE, INCOMPLETE_RULE, SYNTHESIS_TASK_CHARS, synthesis_task
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic

pytestmark = pytest.mark.anyio

DOCUMENT = "".join(f"Paragraph {i}: the report says revenue grew in region {i}.\n" for i in range(600))


def plan(task: str) -> Plan:
    subtasks = [{"id": f"part-{i}", "role": "reviewer", "instructions": f"Review part {i}.", "depends_on": []}
                for i in range(2)]  # fmt: skip
    return Plan.model_validate({"plan_id": "p-synth", "task": task, "subtasks": subtasks})


def settings(base_url: str, tmp_path: Path) -> Settings:
    return Settings(anthropic_api_key=SecretStr("k"), anthropic_base_url=base_url, db_path=str(tmp_path / "r.db"))


def user_text(request: FakeRequest) -> str:
    content = request.body["messages"][0]["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


def is_synthesis(request: FakeRequest) -> bool:
    return "gaps" in (request.schema or {}).get("properties", {})


async def test_subtasks_read_a_long_task_whole_and_the_synthesizer_reads_its_head_and_a_note(tmp_path: Path) -> None:
    task = f"Review the document below.\n\n{DOCUMENT}"
    assert len(task) > 2 * SYNTHESIS_TASK_CHARS
    async with serve_fake_anthropic() as fake, Service.open(settings(fake.base_url, tmp_path)) as service:
        report = await service.execute_plan(plan(task))
        synthesis = await service.synthesize(run_id=report.run_id)
    assert synthesis.answer
    [synth] = [r for r in fake.message_requests if is_synthesis(r)]
    workers = [r for r in fake.message_requests if not is_synthesis(r)]
    assert len(workers) == 2
    assert all(task in user_text(r) for r in workers)  # every subtask reads the document whole
    text = user_text(synth)
    assert task[:SYNTHESIS_TASK_CHARS] in text
    assert DOCUMENT[-200:] not in text
    assert f"the task's last {len(task) - SYNTHESIS_TASK_CHARS:,} characters are left out" in text


def test_a_task_up_to_the_limit_reaches_the_synthesizer_whole() -> None:
    task = "x" * SYNTHESIS_TASK_CHARS
    assert synthesis_task(task) == task
    assert synthesis_task(task + "y").startswith(task)
    assert synthesis_task(task + "y") != task + "y"


def test_the_estimate_prices_the_synthesis_on_the_task_it_will_read() -> None:
    long, short = plan(f"Review the document below.\n\n{DOCUMENT}"), plan("Review the document below.")
    grows, base = (estimate_plan(p, Settings(), BUILTIN_ROLES).synthesis for p in (long, short))
    assert grows is not None
    assert base is not None
    # the document's head, not its 45k characters
    assert grows.input_tokens - base.input_tokens <= SYNTHESIS_TASK_CHARS // 3


# A result later subtasks used reaches the synthesizer by its summary; final results whole.

LAYERED = Plan.model_validate(
    {
        "plan_id": "p-layers",
        "task": "Pick a database.",
        "subtasks": [
            {"id": "a", "role": "writer", "instructions": "Describe SQLite.", "depends_on": []},
            {"id": "b", "role": "writer", "instructions": "Describe Postgres.", "depends_on": []},
            {"id": "e", "role": "writer", "instructions": "Compare them.", "depends_on": ["a", "b"]},
        ],
    }
)


def layered_reply(request: FakeRequest) -> FakeReply:
    if is_synthesis(request):
        return json_reply({"answer": "Use SQLite.", "gaps": []})
    task_id = request.subtask_id
    return json_reply({"summary": f"SUMMARY-{task_id}", "text": f"BODY-{task_id} " * 40})


async def synthesis_request(tmp_path: Path, **overrides: object) -> tuple[Synthesis, FakeRequest]:
    async with (
        serve_fake_anthropic(layered_reply) as fake,
        Service.open(settings(fake.base_url, tmp_path).model_copy(update=overrides)) as service,
    ):
        report = await service.execute_plan(LAYERED)
        synthesis = await service.synthesize(run_id=report.run_id)
    [synth] = [r for r in fake.message_requests if is_synthesis(r)]
    return synthesis, synth


async def synthesized(tmp_path: Path, **overrides: object) -> tuple[Synthesis, str]:
    synthesis, request = await synthesis_request(tmp_path, **overrides)
    return synthesis, user_text(request)


async def test_the_synthesizer_reads_used_results_by_their_summary_and_the_final_one_whole(tmp_path: Path) -> None:
    synthesis, text = await synthesized(tmp_path)
    assert synthesis.read_by_summary == ["a", "b"]
    assert "BODY-e" in text
    assert all(f"SUMMARY-{t}" in text for t in "ab")
    assert "SUMMARY-e" not in text  # read whole, its summary would say it twice
    assert not any(f"BODY-{t}" in text for t in "ab")
    assert BY_SUMMARY_NOTE in text


async def test_synthesis_reads_all_gives_the_synthesizer_every_result_whole(tmp_path: Path) -> None:
    synthesis, text = await synthesized(tmp_path, synthesis_reads="all")
    assert synthesis.read_by_summary == []
    assert all(f"BODY-{t}" in text for t in "abe")
    assert BY_SUMMARY_NOTE not in text


async def test_results_passed_without_their_plan_are_read_whole(tmp_path: Path) -> None:
    async with serve_fake_anthropic(layered_reply) as fake, Service.open(settings(fake.base_url, tmp_path)) as service:
        report = await service.execute_plan(LAYERED)
        synthesis = await service.synthesize(results=report.results, task=LAYERED.task)
    [synth] = [r for r in fake.message_requests if is_synthesis(r)]
    assert synthesis.read_by_summary == []
    assert all(f"BODY-{t}" in user_text(synth) for t in "abe")


def test_the_estimate_expects_summaries_of_used_results_and_keeps_the_worst_case_whole() -> None:
    final, every = (
        estimate_plan(LAYERED, Settings(synthesis_reads=r), BUILTIN_ROLES).synthesis for r in ("final", "all")
    )
    assert final is not None
    assert every is not None
    writer = BUILTIN_ROLES["writer"].expected_output_tokens
    assert every.input_tokens - final.input_tokens == 2 * (writer - SUMMARY_TOKENS)
    assert final.max_input_tokens == every.max_input_tokens  # a failed user leaves its inputs to be read whole


async def test_the_synthesizer_is_told_to_name_what_is_missing_only_when_a_result_is_missing_or_cut(
    tmp_path: Path,
) -> None:
    _, whole = await synthesis_request(tmp_path / "whole")
    assert INCOMPLETE_RULE not in whole.system_text  # every result succeeded and is read whole: a rule for nothing
    _, cut = await synthesis_request(tmp_path / "cut", context_budget_tokens=256, synthesis_reads="all")
    assert "shrunk for the budget" in user_text(cut)
    assert INCOMPLETE_RULE in cut.system_text
