"""The run store, specified by example: safe opening, round-trips, durability, usage, listing, interruption."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import anyio
import anyio.lowlevel
import pytest

from store_setup import OPTIONS
from subagent_mcp.contracts import Plan, RunReport, RunStatus, Spend, SubagentResult, Subtask, TaskStatus, Usage
from subagent_mcp.run_options import RunOptions
from subagent_mcp.store import RunState, SqliteStore, Store, StoreError, default_db_path, pid_alive


@dataclass
class Clock:
    """A clock that moves one second per reading, so ordering by time is deterministic."""

    now: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make_plan(plan_id: str = "plan-1", task: str = "Write a report", ids: tuple[str, ...] = ("a", "b")) -> Plan:
    return Plan(
        plan_id=plan_id, task=task, subtasks=[Subtask(id=i, role="worker", instructions=f"do {i}") for i in ids]
    )


def result(task_id: str, status: TaskStatus = "succeeded", tokens: int = 0, cost: float = 0.0) -> SubagentResult:
    return SubagentResult(
        task_id=task_id,
        role="worker",
        status=status,
        output={"answer": task_id} if status == "succeeded" else None,
        usage=Usage(input_tokens=tokens, output_tokens=tokens // 2),
        cost_usd=cost,
        model="claude-haiku-5-5",
    )


def reaped_child_pid() -> int:
    """The pid of a child that has exited and been reaped, so no process has it (barring reuse)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "runs.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore.open(db_path, now=Clock()) as s:
        yield s


def started(store: SqliteStore, run_id: str = "run-1", plan: Plan | None = None) -> Plan:
    plan = plan or make_plan()
    store.save_plan(plan)
    store.create_run(run_id, plan.plan_id, OPTIONS)
    return plan


# --- where the database lives ----------------------------------------------------------------------


def test_default_path_follows_xdg_data_home_on_linux() -> None:
    path = default_db_path({"XDG_DATA_HOME": "/xdg"}, "linux", Path("/home/u"))
    assert path == Path("/xdg/subagent-mcp/subagent-mcp.db")


@pytest.mark.parametrize("environ", [{}, {"XDG_DATA_HOME": ""}, {"XDG_DATA_HOME": "relative/dir"}])
def test_default_path_on_linux_falls_back_to_local_share(environ: dict[str, str]) -> None:
    path = default_db_path(environ, "linux", Path("/home/u"))
    assert path == Path("/home/u/.local/share/subagent-mcp/subagent-mcp.db")


def test_default_path_on_macos_is_application_support() -> None:
    path = default_db_path({}, "darwin", Path("/Users/u"))
    assert path == Path("/Users/u/Library/Application Support/subagent-mcp/subagent-mcp.db")


def test_default_path_on_windows_is_local_app_data() -> None:
    assert default_db_path({"LOCALAPPDATA": "/c/AppData/Local"}, "win32", Path("/c")) == Path(
        "/c/AppData/Local/subagent-mcp/subagent-mcp.db"
    )
    assert default_db_path({}, "win32", Path("/c")) == Path("/c/AppData/Local/subagent-mcp/subagent-mcp.db")


# --- opening safely --------------------------------------------------------------------------------


def test_open_creates_missing_folders_and_a_wal_database(db_path: Path) -> None:
    with SqliteStore.open(db_path) as s:
        assert s.path == str(db_path)
        assert db_path.read_bytes().startswith(b"SQLite format 3\x00")


def test_memory_database_works_without_a_file() -> None:
    with SqliteStore.open(":memory:") as s:
        s.save_plan(make_plan())
        assert s.get_plan("plan-1") == make_plan()
        assert s.path == ":memory:"


def test_a_zero_byte_file_is_initialised_in_place_as_sqlite_does(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.touch()
    with SqliteStore.open(path) as s:
        s.save_plan(make_plan())
    assert path.stat().st_size > 0


def _valid_database_bytes(tmp_path: Path) -> bytes:
    source = tmp_path / "source.db"
    with SqliteStore.open(source) as s:
        started(s)
        for i in range(40):
            s.save_result("run-1", result(f"t{i}", tokens=10).model_copy(update={"output": {"text": "x" * 400}}))
    data = source.read_bytes()
    source.unlink()
    return data


def _another_programs_database(tmp_path: Path) -> bytes:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.commit()
    conn.close()
    data = other.read_bytes()
    other.unlink()
    return data


BAD_FILES = {
    "random bytes": (lambda _: os.urandom(4096), "is not a SQLite database"),
    "a text file": (lambda _: b"\n", "is not a SQLite database"),
    "a short text file": (lambda _: b"my notes\n", "is not a SQLite database"),
    "a truncated database": (lambda tmp: _valid_database_bytes(tmp)[: 3 * 4096], "is damaged"),
    "a corrupted database": (
        lambda tmp: (lambda d: d[: 2 * 4096] + os.urandom(4096) + d[3 * 4096 :])(_valid_database_bytes(tmp)),
        "is damaged",
    ),
    "another program's database": (_another_programs_database, "is a SQLite database of another program"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_file_that_is_not_our_database_is_refused_by_name_and_left_untouched(tmp_path: Path, kind: str) -> None:
    make, problem = BAD_FILES[kind]
    path = tmp_path / "runs.db"
    path.write_bytes(make(tmp_path))
    before = path.read_bytes()

    with pytest.raises(StoreError) as caught:
        SqliteStore.open(path)

    message = str(caught.value)
    assert message.startswith(f"The run database at {path} {problem}")
    assert "Move the file aside" in message
    assert "SUBAGENT_MCP_DB_PATH" in message
    assert caught.value.path == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["runs.db"]  # nothing renamed, nothing created beside it


def test_a_directory_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is not a regular file"):
        SqliteStore.open(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_refused_with_a_permissions_hint(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(100))
    path.chmod(0)
    try:
        with pytest.raises(StoreError) as caught:
            SqliteStore.open(path)
    finally:
        path.chmod(0o600)
    assert str(path) in str(caught.value)
    assert "Fix its permissions" in str(caught.value)
    assert path.read_bytes() == b"SQLite format 3\x00" + bytes(100)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes files whatever their mode")
def test_a_read_only_file_is_refused_rather_than_failing_at_the_first_write(db_path: Path) -> None:
    SqliteStore.open(db_path).close()
    db_path.chmod(0o444)
    try:
        with pytest.raises(StoreError, match=r"is read-only\. Fix its permissions"):
            SqliteStore.open(db_path)
    finally:
        db_path.chmod(0o600)


# --- plans and results -----------------------------------------------------------------------------


def test_a_stored_plan_that_breaks_a_newer_rule_is_a_store_error_that_says_so(db_path: Path) -> None:
    with SqliteStore.open(db_path) as store:
        store.save_plan(make_plan())
    legacy = make_plan().model_dump(mode="json") | {"plan_id": "a/b"}  # saved before ids were restricted
    with sqlite3.connect(db_path) as db:
        db.execute(
            "INSERT INTO plans (plan_id, task, created_at, json) VALUES ('a/b', 't', '2026-01-01', ?)",
            (json.dumps(legacy),),
        )
    db.close()
    with SqliteStore.open(db_path) as store, pytest.raises(StoreError, match=r"stored plan 'a/b' .* no longer passes"):
        store.get_plan("a/b")


def test_every_run_status_can_be_stored() -> None:
    assert set(get_args(RunStatus)) | {"running", "interrupted"} == set(get_args(RunState))


def test_a_run_row_from_the_first_version_reads_back_with_typed_options(store: SqliteStore, db_path: Path) -> None:
    started(store)
    first = {"max_concurrency": 2, "task_timeout_s": 30.0, "run_timeout_s": 90.0, "max_cost_usd": 1.5,
             "max_total_tokens": None, "retired_field": "ignored"}  # fmt: skip
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE runs SET options_json = ? WHERE run_id = 'run-1'", (json.dumps(first),))
    raw.close()

    run = store.get_run("run-1")
    assert run is not None
    assert run.options == RunOptions(max_concurrency=2, task_timeout_s=30.0, run_timeout_s=90.0, max_cost_usd=1.5)
    assert (run.options.batch, run.options.orchestrated, run.planning) == (False, False, Spend())


def test_run_options_are_stored_as_one_json_object_of_their_fields_as_before(store: SqliteStore, db_path: Path) -> None:
    options = OPTIONS.model_copy(update={"prior_spend": Spend(usage=Usage(input_tokens=7), cost_usd=0.25)})
    store.save_plan(make_plan())
    store.create_run("run-1", "plan-1", options)

    raw = sqlite3.connect(db_path)
    (stored,) = raw.execute("SELECT options_json FROM runs WHERE run_id = 'run-1'").fetchone()
    raw.close()
    assert stored == json.dumps(options.model_dump())  # what create_run was given before it took RunOptions
    assert json.loads(stored)["prior_spend"]["cost_usd"] == 0.25


# --- interruption and resume -----------------------------------------------------------------------


def test_pid_alive_knows_this_process_and_a_reaped_child() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(reaped_child_pid())
    assert not pid_alive(0)


def test_mark_interrupted_judges_runs_from_before_leases_by_their_pid(store: SqliteStore, db_path: Path) -> None:
    started(store, "run-mine")
    started(store, "run-dead")
    started(store, "run-alive-elsewhere")
    started(store, "run-done")
    store.finish_run("run-done", RunReport(run_id="run-done", plan_id="plan-1", status="succeeded", results=[]))
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as other:
        raw = sqlite3.connect(db_path)
        with raw:
            raw.execute("UPDATE runs SET pid = ? WHERE run_id IN ('run-dead', 'run-done')", (reaped_child_pid(),))
            raw.execute("UPDATE runs SET pid = ? WHERE run_id = 'run-alive-elsewhere'", (other.pid,))
            raw.execute(
                "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id != 'run-mine'"
            )  # as m005 left them
        raw.close()

        assert store.mark_interrupted() == ["run-dead"]
        assert store.mark_interrupted() == []
        assert other.stdin is not None
        other.stdin.close()

    statuses = {r.run_id: r.status for r in store.list_runs()}
    assert statuses == {
        "run-mine": "running",
        "run-dead": "interrupted",
        "run-alive-elsewhere": "running",
        "run-done": "succeeded",
    }


CRASHING_CHILD = textwrap.dedent(
    """
    import os, sys
    from subagent_mcp.contracts import Plan, SubagentResult, Subtask, Usage
    from subagent_mcp.run_options import RunOptions
    from subagent_mcp.store import SqliteStore

    store = SqliteStore.open(sys.argv[1])
    plan = Plan(plan_id="plan-1", task="t", subtasks=[Subtask(id=i, role="worker", instructions=i) for i in "abc"])
    store.save_plan(plan)
    store.create_run("run-1", "plan-1", RunOptions(max_concurrency=4, task_timeout_s=60, run_timeout_s=600))
    done = SubagentResult(task_id="a", role="worker", status="succeeded", usage=Usage(input_tokens=9))
    store.save_result("run-1", done)
    store.save_result("run-1", SubagentResult(task_id="b", role="worker", status="failed", error="boom"))
    os._exit(1)  # a crash: no close, no checkpoint, task c still in flight
    """
)


def test_a_crash_keeps_finished_results_and_resume_takes_the_run_over(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    child = subprocess.run([sys.executable, "-c", CRASHING_CHILD, str(db_path)], check=False, capture_output=True)
    assert child.returncode == 1, child.stderr.decode()

    an_hour_later = lambda: datetime.now(UTC) + timedelta(hours=1)  # noqa: E731 - the crashed owner's lease is over
    with SqliteStore.open(db_path, now=an_hour_later, owner="restarted") as s:
        assert s.mark_interrupted() == ["run-1"]
        run = s.get_run("run-1")
        assert run is not None
        assert run.status == "interrupted"
        assert {t: r.status for t, r in run.results.items()} == {"a": "succeeded", "b": "failed"}
        assert run.usage.input_tokens == 9

        resumed = s.resume_run("run-1")
        assert (resumed.status, resumed.pid, resumed.succeeded_ids()) == ("running", os.getpid(), {"a"})
        assert resumed.owner == "restarted"
        with pytest.raises(StoreError, match=r"still running in this server \(restarted\)"):
            s.resume_run("run-1")
        with pytest.raises(StoreError, match="No run 'run-x'"):
            s.resume_run("run-x")


# --- the async facade ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_store_round_trips_and_closes_on_exit(db_path: Path) -> None:
    async with Store.open(db_path) as store:
        await store.save_plan(make_plan())
        await store.create_run("run-1", "plan-1", OPTIONS)
        await store.save_result("run-1", result("a", tokens=4))
        await store.log_usage("run-1", "_synthesis", None, Usage(output_tokens=1), 0.0)
        await store.finish_run("run-1", RunReport(run_id="run-1", plan_id="plan-1", status="partial", results=[]))
        assert await store.get_plan("plan-1") == make_plan()
        assert [r.run_id for r in await store.list_runs()] == ["run-1"]
        assert await store.mark_interrupted() == []
        assert store.path == str(db_path)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.sync.get_plan("plan-1")

    async with Store.open(db_path) as store:
        run = await store.get_run("run-1")
        assert run is not None
        assert (run.status, run.usage.total_tokens) == ("partial", 7)
        assert (await store.resume_run("run-1")).status == "running"


@pytest.mark.anyio
async def test_async_store_closes_even_when_its_scope_is_cancelled(db_path: Path) -> None:
    opened: list[Store] = []
    with anyio.CancelScope() as scope:
        async with Store.open(db_path) as store:
            opened.append(store)
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].sync.get_plan("plan-1")


@pytest.mark.anyio
async def test_async_open_reports_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"not sqlite")
    with pytest.raises(StoreError, match="is not a SQLite database"):
        async with Store.open(path):
            pass
