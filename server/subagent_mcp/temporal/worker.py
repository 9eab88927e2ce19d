"""A Temporal worker: runs workflows (the DAG scheduling) and activities (model calls, store writes).

``subagent-mcp worker`` starts one; tests start one in-process with :func:`running_worker`. Every worker
of a process shares one backend: the Anthropic client with its own retries off (Temporal retries, see
``activities.py``) behind the process-wide adaptive gate on model calls in flight, as in the server.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ..backends.base import ModelBackend
from ..backends.cache_warmup import CacheWarmupBackend
from ..backends.limited import limited
from ..errors import SubagentMCPError
from ..replicas import store_location
from ..settings import Settings
from ..store import Store, temporal_owner
from .activities import Activities
from .client import connect
from .workflow import RunWorkflow

log = logging.getLogger(__name__)

PASSED_THROUGH = ("anyio", "sniffio", "subagent_mcp")
"""Modules the workflow sandbox shares with the worker instead of re-importing: pure here, and anyio's
asyncio backend must be the loaded one."""


def worker_backend(settings: Settings) -> ModelBackend:
    """The model backend of a worker process: no retries of its own (Temporal's policy retries), one gate.

    Raises:
        ConfigError: no API key (and not demo mode).
    """
    once = settings.model_copy(update={"max_retries": 0})
    if settings.demo:
        from ..demo import demo_backend

        inner: ModelBackend = demo_backend()
    else:
        settings.require_api_key()
        from ..backends.anthropic import AnthropicBackend

        inner = AnthropicBackend(once)
    return CacheWarmupBackend(limited(inner, settings))


@asynccontextmanager
async def running_worker(
    settings: Settings, backend: ModelBackend | None = None, client: Client | None = None
) -> AsyncGenerator[Worker]:
    """A worker polling the configured task queue until the block exits (then it finishes what it holds)."""
    client = client or await connect(settings)
    backend = backend or worker_backend(settings)
    owner = temporal_owner(settings.temporal_namespace, settings.temporal_task_queue)  # runs on Temporal are its own
    async with Store.open(store_location(settings), owner=owner, lease_s=settings.lease_s) as store:
        activities = Activities(store, backend, settings.temporal_heartbeat_s)
        worker = Worker(
            client,
            task_queue=settings.temporal_task_queue,
            workflows=[RunWorkflow],
            activities=[activities.complete, activities.save_result, activities.finish_run],
            max_concurrent_activities=4 * settings.max_concurrency + 8,  # model calls wait in the gate, heartbeating
            # a run's next step waits this long for a lost worker that held the run in its cache, then goes elsewhere
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=min(settings.temporal_heartbeat_s, 10.0)),
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
            ),
        )
        try:
            async with worker:
                yield worker
        finally:
            with anyio.CancelScope(shield=True):
                await backend.aclose()


async def worker_command(settings: Settings) -> int:
    """Run a worker until SIGINT or SIGTERM; a clear line and exit code 2 if it cannot start."""
    try:
        async with running_worker(settings):
            log.info(
                "worker polling task queue %r at %s (namespace %r), up to %d model calls in flight",
                settings.temporal_task_queue,
                settings.temporal_address,
                settings.temporal_namespace,
                settings.max_concurrency,
            )
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            log.info("worker stopping: finishing what it holds")
    except SubagentMCPError as exc:
        log.error("subagent-mcp worker: %s", exc)
        return 2
    return 0
