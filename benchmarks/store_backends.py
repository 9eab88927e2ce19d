"""The run store on SQLite and on PostgreSQL: what each call a run makes costs, per backend (nothing asserts).

    python -m benchmarks.store_backends          # SQLite in a temp folder, PostgreSQL from SUBAGENT_MCP_TEST_PG_URL
                                                 # or a throwaway local cluster (Debian's binaries, fsync on)

Per call: save_result (one subtask's result and usage, committed), get_run of a 300-result run (what
wait_run on another server reads each poll), heartbeat (each server, every min(lease/3, 2) s).
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import anyio

from subagent_mcp.contracts import Plan, SubagentResult, Subtask, Usage
from subagent_mcp.run_options import RunOptions
from subagent_mcp.store import Store
from subagent_mcp.testing.postgres import TEST_PG_URL_ENV, create_database, find_bin_dir, throwaway_cluster

TASKS = 300


async def measure(location: str) -> dict[str, float]:
    """Milliseconds per call of each kind, on the database at ``location``."""
    async with Store.open(location) as store:
        subtasks = [Subtask(id=f"t{i}", role="worker", instructions="x") for i in range(TASKS)]
        await store.save_plan(Plan(plan_id="p", task="t", subtasks=subtasks))
        await store.create_run("r", "p", RunOptions(max_concurrency=4, task_timeout_s=60, run_timeout_s=600))
        started = time.perf_counter()
        for i in range(TASKS):
            output = {"summary": "x" * 500}
            result = SubagentResult(task_id=f"t{i}", role="worker", status="succeeded", output=output,
                                    usage=Usage(input_tokens=900, output_tokens=150), cost_usd=0.001)  # fmt: skip
            await store.save_result("r", result)
        save = (time.perf_counter() - started) / TASKS
        started = time.perf_counter()
        for _ in range(50):
            await store.get_run("r")
        read = (time.perf_counter() - started) / 50
        started = time.perf_counter()
        for _ in range(200):
            await store.heartbeat([])
        beat = (time.perf_counter() - started) / 200
    return {"save_result": save * 1000, f"get_run ({TASKS} results)": read * 1000, "heartbeat": beat * 1000}


def main() -> None:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        locations = {"sqlite": str(folder / "runs.db")}
        admin = os.environ.get(TEST_PG_URL_ENV)
        bin_dir = find_bin_dir()
        if admin is None and bin_dir is not None:
            admin = stack.enter_context(throwaway_cluster(bin_dir, fsync=True))
        if admin is not None:
            locations["postgresql"] = anyio.run(create_database, admin)
        else:
            print("no PostgreSQL here: set SUBAGENT_MCP_TEST_PG_URL or install Debian's postgresql")
        for name, location in locations.items():
            figures = anyio.run(measure, location)
            print(f"{name:<11}" + "  ".join(f"{what} {ms:.2f} ms" for what, ms in figures.items()))


if __name__ == "__main__":
    main()
