"""The take-over rule both store adapters apply to ``resume_run``, specified directly (no database)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from subagent_mcp.store.rows import held, new_owner_id
from subagent_mcp.store.takeover import takeover_refusal

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def refusal(
    status: str = "running", owner: str | None = "server-b", *, held: bool = True, mine: bool = False
) -> str | None:
    return takeover_refusal("run-1", status, owner, 4242, held=held, me="server-a", not_running_here=mine)


@pytest.mark.parametrize("status", ["interrupted", "succeeded", "partial", "failed", "cancelled"])
def test_a_run_that_is_not_running_may_be_taken_over_whoever_held_it(status: str) -> None:
    assert refusal(status) is None
    assert refusal(status, owner="server-a") is None


def test_a_run_another_server_still_holds_is_refused_naming_that_server() -> None:
    assert refusal() == (
        "Run 'run-1' is still running in server server-b (its lease is renewed while it runs); "
        "wait_run or cancel_run it instead."
    )


def test_a_run_from_before_owner_ids_is_refused_naming_its_pid() -> None:
    assert refusal(owner=None) == (
        "Run 'run-1' is still running in server 4242 (its lease is renewed while it runs); "
        "wait_run or cancel_run it instead."
    )


def test_a_run_no_server_holds_any_more_may_be_taken_over() -> None:
    assert refusal(held=False) is None
    assert refusal(owner=None, held=False) is None


def test_a_run_this_server_owns_is_refused_unless_the_caller_knows_it_runs_no_such_run() -> None:
    assert refusal(owner="server-a") == "Run 'run-1' is still running in this server (server-a)."
    assert refusal(owner="server-a", held=False) == "Run 'run-1' is still running in this server (server-a)."
    assert refusal(owner="server-a", mine=True) is None


def test_a_row_without_a_lease_is_held_while_its_pid_lives() -> None:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()  # exited and reaped: no process has its pid (barring reuse)

    assert held(None, None, NOW, pid=os.getpid())
    assert not held(None, None, NOW, pid=child.pid)
    assert not held(None, None, NOW)


def test_a_leased_row_is_held_until_its_lease_ends_or_its_process_here_is_gone() -> None:
    me = new_owner_id()  # this process, on this machine
    assert held(NOW + timedelta(seconds=1), me, NOW)
    assert not held(NOW, me, NOW)
    assert held(NOW + timedelta(seconds=1), "elsewhere:1:abc", NOW, pid=os.getpid())
    assert held(None, "temporal:default/queue", NOW)  # a durable workflow holds it, lease or not
