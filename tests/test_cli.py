"""The `subagent-mcp` command as a person uses it from a shell (demo backend, a private database)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import OrchestrateResult, RunReport
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic

SCRIPT = Path(sys.executable).with_name("subagent-mcp")
pytestmark = pytest.mark.subprocess


def env_for(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    env["SUBAGENT_MCP_DB_PATH"] = str(db)
    return env


def cli(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env_for(db) | env, check=False
    )


def test_the_command_starts_without_importing_the_anthropic_sdk() -> None:
    """The SDK takes about a second to import: every terminal command and every host's server start paid it."""
    code = "import sys, subagent_mcp.cli, subagent_mcp.cli_run, subagent_mcp.service; print('anthropic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_help_lists_every_command(tmp_path: Path) -> None:
    out = cli(tmp_path / "db", "--help")
    assert out.returncode == 0
    for command in ("serve", "run", "runs", "show", "roles"):
        assert command in out.stdout


def test_a_demo_run_prints_the_answer_then_runs_and_show_find_it(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run = cli(db, "run", "--demo", "--json", "Compare two databases")
    assert run.returncode == 0, run.stderr
    result = OrchestrateResult.model_validate_json(run.stdout)
    assert result.report.status == "succeeded"
    assert "[demo output" in run.stdout
    assert "started research-a" in run.stderr  # the progress display went to stderr, not stdout
    assert "in all, planning included" in run.stderr

    runs = cli(db, "runs")
    assert result.report.run_id in runs.stdout
    assert f"${result.total.cost_usd:.4f} in all" in runs.stdout  # the same total the run printed
    shown = cli(db, "show", result.report.run_id)
    assert shown.returncode == 0
    assert "write-up [writer] succeeded" in shown.stdout
    assert result.synthesis is not None
    assert result.synthesis.answer in shown.stdout  # the stored answer, not paid for again
    assert "synthesize(" not in shown.stdout  # the answer is right there
    total = result.total
    assert f"In all: {total.usage.input_tokens:,} in / {total.usage.output_tokens:,} out tokens" in shown.stdout
    assert "(planning $" in shown.stdout
    assert "+ synthesis $" in shown.stdout


def test_show_breaks_the_cost_down_per_subtask_and_per_model_then_planning_and_synthesis(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run = cli(db, "run", "--demo", "--json", "Compare two databases")
    assert run.returncode == 0, run.stderr
    result = OrchestrateResult.model_validate_json(run.stdout)
    shown = cli(db, "show", result.report.run_id)
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout[shown.stdout.index("Cost breakdown:") :].splitlines()
    assert table[1].split() == ["subtask", "model", "in", "out", "cache", "read", "cache", "write", "cost"]
    for r in result.report.results:
        row = next(line.split() for line in table if line.split()[:1] == [r.task_id])
        u = r.usage
        assert row[1:] == [
            r.model, f"{u.input_tokens:,}", f"{u.output_tokens:,}", f"{u.cache_read_tokens:,}",
            f"{u.cache_write_tokens:,}", f"${r.cost_usd:.4f}",
        ]  # fmt: skip
    models = {r.model for r in result.report.results}
    assert {line.split()[0] for line in table if line.split()[:1] and line.split()[0] in models} == models
    assert any(line.split()[:1] == ["planning"] for line in table)
    assert any(line.split()[:1] == ["synthesis"] for line in table)
    total = next(line.split() for line in table if line.split()[:1] == ["total"])
    assert total[-1] == f"${result.total.cost_usd:.4f}"

    as_json = json.loads(cli(db, "show", result.report.run_id, "--json").stdout)
    assert as_json["cost_breakdown"]["total"]["cost_usd"] == pytest.approx(result.total.cost_usd)


def test_a_demo_run_keeps_to_a_small_max_subtasks_takes_an_unquoted_task_whole_and_points_at_show(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    run = cli(db, "run", "--demo", "--max-subtasks", "2", "Compare", "two", "databases")
    assert run.returncode == 0, run.stderr
    (summary,) = json.loads(cli(db, "runs", "--json").stdout)
    assert summary["task"] == "Compare two databases"
    assert summary["status"] == "succeeded"
    assert sum(summary["counts"].values()) <= 2
    assert f"Full outputs: subagent-mcp show {summary['run_id']} --json" in run.stdout  # a terminal has no MCP
    assert "structured result" not in run.stdout


def test_run_without_a_task_says_a_task_is_missing_and_shows_one(tmp_path: Path) -> None:
    out = cli(tmp_path / "runs.db", "run")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        'subagent-mcp: run needs a task, e.g. subagent-mcp run "Compare SQLite and Postgres for a desktop app" '
        "(or --resume RUN_ID)"
    )


@pytest.mark.anyio
async def test_a_bad_max_concurrency_is_refused_before_the_planner_is_paid(tmp_path: Path) -> None:
    key = "sk-ant-test-cli-key-0002"
    async with serve_fake_anthropic(planned_reply, api_key=key) as fake:
        env = env_for(tmp_path / "runs.db") | {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": fake.base_url}
        done = await anyio.run_process(
            [str(SCRIPT), "run", "--max-concurrency", "0", "Pick a database"], env=env, check=False
        )
    assert done.returncode == 2
    assert "max_concurrency must be between 1 and 1024, got 0" in done.stderr.decode()
    assert fake.message_requests == []


def test_the_stdio_server_says_on_stderr_when_it_serves_in_demo_mode(tmp_path: Path) -> None:
    served = subprocess.run(
        [str(SCRIPT), "--demo"], input="", capture_output=True, text=True, timeout=60, env=env_for(tmp_path / "db")
    )
    assert served.returncode == 0, served.stderr
    assert "Demo mode is on: a scripted backend answers, no model is called" in served.stderr
    assert served.stdout == ""  # stdout is the protocol's alone


def test_run_with_both_a_task_and_resume_says_to_pick_one(tmp_path: Path) -> None:
    out = cli(tmp_path / "runs.db", "run", "--resume", "run-1", "a task")
    assert out.returncode == 2
    assert out.stderr.strip() == "subagent-mcp: give a task or --resume RUN_ID, not both"


def test_without_a_key_run_says_what_to_set_and_exits_non_zero(tmp_path: Path) -> None:
    out = cli(tmp_path / "runs.db", "run", "anything")
    assert out.returncode == 2
    assert "ANTHROPIC_API_KEY is not set" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_corrupt_database_is_named_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    db.write_bytes(b"not a database, but somebody's data")
    for args in (("runs",), ("serve",)):
        out = cli(db, *args)
        assert out.returncode == 2
        assert str(db) in out.stderr
        assert "Traceback" not in out.stderr
    assert db.read_bytes() == b"not a database, but somebody's data"


async def interrupt(db: Path, *args: str, at: str = "started analyse") -> tuple[int, str, str]:
    """Run the command, press Ctrl-C once ``at`` shows in its progress; return (exit code, stdout, stderr)."""
    with anyio.fail_after(60):
        async with await anyio.open_process([str(SCRIPT), *args], env=env_for(db)) as process:
            assert process.stderr is not None
            assert process.stdout is not None
            seen = ""
            async for chunk in TextReceiveStream(process.stderr):
                seen += chunk
                if at in seen:
                    process.send_signal(signal.SIGINT)
                    break
            stdout = "".join([chunk async for chunk in TextReceiveStream(process.stdout)])
            seen += "".join([chunk async for chunk in TextReceiveStream(process.stderr)])
            code = await process.wait()
    return code, stdout, seen


@pytest.mark.anyio
async def test_ctrl_c_cancels_cleanly_reports_what_finished_and_how_to_resume(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    # the demo's first two subtasks are done when the third starts
    code, stdout, seen = await interrupt(db, "run", "--demo", "--json", "Compare two databases")
    assert code == 130
    report = RunReport.model_validate(json.loads(stdout))
    statuses = {r.task_id: r.status for r in report.results}
    assert statuses["research-a"] == statuses["research-b"] == "succeeded"
    assert statuses["analyse"] == "cancelled"
    assert f"subagent-mcp run --demo --resume {report.run_id}" in seen  # the command to copy resumes it as it ran
    assert "Traceback" not in seen
    real = cli(db, "run", "--json", "--resume", report.run_id)  # not on real models over scripted work
    assert real.returncode == 2
    assert "is a demo run (scripted outputs, nothing billed); resume it in demo mode" in real.stderr
    assert "Demo run: a scripted backend answered and nothing was billed" in cli(db, "show", report.run_id).stdout

    resumed = cli(db, "run", "--demo", "--json", "--resume", report.run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 4 subtasks already succeeded and are kept" in resumed.stderr
    assert "in all, planning included" in resumed.stderr  # the first process's planning is remembered
    assert OrchestrateResult.model_validate_json(resumed.stdout).report.status == "succeeded"


def planned_reply(request: FakeRequest) -> FakeReply:
    """The demo's plan for the planner, a schema-valid object for everyone else."""
    if "Plan the user's task" in request.system_text:
        return json_reply(demo_plan_draft())
    return json_reply(sample_for_schema(request.schema or {}))


@pytest.mark.anyio
async def test_with_a_key_run_does_a_whole_task_against_the_api_from_the_terminal(tmp_path: Path) -> None:
    key = "sk-ant-test-cli-key-0001"
    async with serve_fake_anthropic(planned_reply, api_key=key) as fake:
        env = env_for(tmp_path / "runs.db") | {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": fake.base_url}
        done = await anyio.run_process([str(SCRIPT), "run", "--json", "Pick a database"], env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    result = OrchestrateResult.model_validate_json(done.stdout)
    assert result.synthesis is not None
    assert result.synthesis.complete
    assert len(fake.message_requests) == len(result.plan.subtasks) + 2
    assert key not in done.stdout.decode() + done.stderr.decode()


@pytest.mark.anyio
async def test_run_resume_of_a_finished_orchestration_keeps_its_synthesis_and_pays_nothing(tmp_path: Path) -> None:
    key = "sk-ant-test-cli-key-0003"
    async with serve_fake_anthropic(planned_reply, api_key=key) as fake:
        env = env_for(tmp_path / "runs.db") | {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": fake.base_url}
        done = await anyio.run_process([str(SCRIPT), "run", "--json", "Pick a database"], env=env, check=False)
        first = OrchestrateResult.model_validate_json(done.stdout)
        sent = len(fake.message_requests)
        args = [str(SCRIPT), "run", "--json", "--resume", first.report.run_id]
        resumed = await anyio.run_process(args, env=env, check=False)
        listed = await anyio.run_process([str(SCRIPT), "runs", "--json"], env=env, check=False)
    assert resumed.returncode == 0, resumed.stderr.decode()
    again = OrchestrateResult.model_validate_json(resumed.stdout)
    assert len(fake.message_requests) == sent  # nothing was left to run: no subtask, no second synthesis
    assert "its synthesis is kept" in resumed.stderr.decode()
    assert (again.synthesis, again.total) == (first.synthesis, first.total)
    assert json.loads(listed.stdout)[0]["total_cost_usd"] == round(first.total.cost_usd, 8)


@pytest.mark.anyio
async def test_run_batch_sends_the_subtasks_as_one_message_batch_at_half_price(tmp_path: Path) -> None:
    key = "sk-ant-test-cli-key-0002"
    async with serve_fake_anthropic(planned_reply, api_key=key) as fake:
        env = env_for(tmp_path / "runs.db") | {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": fake.base_url}
        env["SUBAGENT_MCP_BATCH_POLL_S"] = "0.01"
        args = [str(SCRIPT), "run", "--batch", "--json", "Pick a database"]
        done = await anyio.run_process(args, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    result = OrchestrateResult.model_validate_json(done.stdout)
    assert result.synthesis is not None
    assert len(fake.message_requests) == 2  # the planner and the synthesis, live
    batched = sum(len(b.requests) for b in fake.batches.created)
    assert batched == len(result.plan.subtasks)  # every subtask in a batch, none sent live
    assert result.report.estimate is not None
    assert result.report.estimate.batch
    assert key not in done.stdout.decode() + done.stderr.decode()


def test_run_batch_with_the_demo_backend_or_with_resume_is_refused_with_why(tmp_path: Path) -> None:
    demo = cli(tmp_path / "runs.db", "run", "--demo", "--batch", "Compare two databases")
    assert demo.returncode == 2, demo.stderr
    assert "batch" in demo.stderr.lower()
    assert "planning" not in demo.stderr  # refused before the planner is asked
    assert "Traceback" not in demo.stderr
    resumed = cli(tmp_path / "runs.db", "run", "--batch", "--resume", "run-000000000000")
    assert resumed.returncode == 2
    assert "drop --batch" in resumed.stderr


@pytest.mark.anyio
async def test_ctrl_c_during_a_resume_reports_that_run_even_when_a_newer_one_exists(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _, stdout, _ = await interrupt(db, "run", "--demo", "--json", "Compare two databases")
    first = RunReport.model_validate(json.loads(stdout)).run_id
    newer = cli(db, "run", "--demo", "--json", "Another task")
    assert newer.returncode == 0, newer.stderr
    code, stdout, seen = await interrupt(db, "run", "--demo", "--json", "--resume", first)
    assert code == 130
    assert RunReport.model_validate(json.loads(stdout)).run_id == first
    assert f"subagent-mcp run --demo --resume {first}" in seen


def test_a_run_stopped_by_the_ceiling_finishes_on_resume_once_the_ceiling_is_raised(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    tight = cli(db, "run", "--demo", "--json", "Compare two databases", SUBAGENT_MCP_MAX_RUN_COST_USD="0.21")
    assert tight.returncode == 1, tight.stderr
    first = OrchestrateResult.model_validate_json(tight.stdout)
    assert first.report.status == "failed"  # the room kept for the synthesis left none for the subtasks
    refused = [r.error or "" for r in first.report.results if r.task_id.startswith("research")]
    assert refused
    assert all("kept for the synthesis" in e and "SUBAGENT_MCP_MAX_RUN_COST_USD" in e for e in refused)
    assert f"subagent-mcp run --resume {first.report.run_id}" in tight.stderr

    resumed = cli(db, "run", "--demo", "--json", "--resume", first.report.run_id)  # today's default: $5
    assert resumed.returncode == 0, resumed.stderr
    again = OrchestrateResult.model_validate_json(resumed.stdout)
    assert again.report.status == "succeeded"
    assert again.synthesis is not None
    assert again.synthesis.complete


def test_show_html_of_an_unknown_run_says_so_and_writes_nothing(tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    out = cli(tmp_path / "runs.db", "show", "run-000000000000", "--html", str(page))
    assert out.returncode == 2
    assert "run-000000000000" in out.stderr
    assert not page.exists()


def test_show_html_into_a_missing_folder_says_it_cannot_write_there(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run = cli(db, "run", "--demo", "--json", "Compare two databases")
    run_id = OrchestrateResult.model_validate_json(run.stdout).report.run_id
    out = cli(db, "show", run_id, "--html", str(tmp_path / "no-such-folder" / "run.html"))
    assert out.returncode == 2
    assert out.stderr.startswith(f"subagent-mcp: cannot write {tmp_path / 'no-such-folder' / 'run.html'}: ")
