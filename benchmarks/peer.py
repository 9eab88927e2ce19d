"""The fake Messages API in a process of its own, as the real API is: its CPU is not the server's.

Parent: ``async with remote_fake(index, median_s) as base_url`` starts
``python -m benchmarks.peer INDEX MEDIAN``, which serves ``service.workloads(MEDIAN)[INDEX]`` with
``RealisticReplies`` (same seeds, same latencies and reply sizes as in-process), prints its base URL
and serves until its stdin closes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE

import anyio
import anyio.to_thread

from subagent_mcp.testing import serve_fake_anthropic

from .service import RealisticReplies, workloads

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def remote_fake(index: int, median_s: float) -> AsyncGenerator[str]:
    """Serve workload ``index`` of ``service.workloads(median_s)`` from a child process; yield its base URL."""
    command = [sys.executable, "-m", "benchmarks.peer", str(index), repr(median_s)]
    async with await anyio.open_process(command, stdin=PIPE, stdout=PIPE, stderr=None, cwd=ROOT) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await process.stdout.receive(1)
        try:
            yield line.decode().strip()
        finally:
            await process.stdin.aclose()
            with anyio.fail_after(10):
                await process.wait()


async def serve(index: int, median_s: float) -> None:
    sw = workloads(median_s)[index]
    replies = RealisticReplies(sw.plan, sw.workload.latency, sw.output_tokens)
    async with serve_fake_anthropic(replies) as fake:
        print(fake.base_url, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin


if __name__ == "__main__":
    anyio.run(serve, int(sys.argv[1]), float(sys.argv[2]))
