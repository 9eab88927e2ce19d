"""The server's side of a run on Temporal: start its workflow, follow its progress, cancel it.

The server keeps what the embedded executor gives a run's callers: a ``LiveRun`` fed with the same
executor events (rebuilt from the workflow's ``progress`` query, polled every ``POLL_S`` and on every
``wait_run``), the spend so far, and ``cancel_run`` (which cancels the workflow and waits until it has
stored what it has). At shutdown the server only stops following: the workflow goes on on the workers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal
from weakref import WeakKeyDictionary

import anyio

from ..background import LiveRun, Outcome, RunRegistry, driven_run
from ..contracts import Plan, RunReport, Spend, SubagentResult
from ..core.run_state import Counts, ExecutorEvent, OnEvent, RunFinished, TaskFinished, TaskStarted
from ..errors import ConfigError, InputError, SubagentMCPError
from ..roles import Role
from ..runs import OnSpend
from ..settings import Settings
from ..store import RunRecord, Store
from . import require_temporalio
from .connection import ConnectArgs, connect_args, connect_failure, connect_timeout
from .payloads import Progress, RunInput, public_settings

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle
    from temporalio.runtime import Runtime

    from ..execution import _Run
    from .workflow import RunWorkflow

log = logging.getLogger(__name__)

POLL_S = 1.0
"""How often a followed run's progress is read from its workflow (a query: no history, but a worker answers it);
every wait_run reads it too, so a caller sees the latest progress whatever this is."""

QUERY_S = 5.0
"""How long one progress read may take (no worker answering) before it is skipped."""

CANCEL_GRACE_S = 60.0
"""How long ``cancel_run`` waits for a cancelled workflow to store its results."""

_runtime: Runtime | None = None


def _quiet_runtime() -> Runtime:
    """The SDK's runtime with its Rust core's log lines sent to Python logging (stderr), never to stdout.

    By default the core prints warnings to stdout, which in stdio mode belongs to the protocol.
    """
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    forward = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forward)
    return Runtime(telemetry=TelemetryConfig(logging=quiet))


_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ConnectArgs, Client]] = WeakKeyDictionary()
"""One client per event loop and connection (address, namespace, TLS, key), reused by every run the loop starts."""


async def connect(settings: Settings) -> Client:
    """A client of the configured Temporal namespace (one per event loop), reached within ``temporal_connect_s``.

    Servers and workers both connect here, with the arguments ``connection.connect_args`` builds (TLS, API key).

    Raises:
        ConfigError: ``temporalio`` is not installed, a certificate file is wrong, or Temporal cannot be reached
            (a TLS handshake with a plaintext server included); the message says what to check.
    """
    require_temporalio()
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    args = connect_args(settings)  # certificate files checked here, before any attempt to connect
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    if args in clients:
        return clients[args]
    global _runtime
    if _runtime is None:
        _runtime = _quiet_runtime()
    try:
        with anyio.fail_after(settings.temporal_connect_s):
            client = await Client.connect(
                args.target_host,
                namespace=args.namespace,
                tls=args.tls.for_sdk() if args.tls is not None else False,
                api_key=args.api_key.get_secret_value() if args.api_key is not None else None,
                data_converter=pydantic_data_converter,
                runtime=_runtime,
            )
    except TimeoutError:
        raise ConfigError(connect_timeout(args, settings.temporal_connect_s)) from None
    except Exception as exc:  # the SDK raises RuntimeError with the gRPC (or TLS) reason
        raise ConfigError(connect_failure(args, exc)) from None
    clients[args] = client
    return client


async def run_on_temporal(
    settings: Settings,
    roles: Mapping[str, Role],
    store: Store,
    run: _Run,
    listeners: tuple[OnEvent | None, OnSpend | None],
) -> RunReport:
    """Run a prepared run as workflow ``run.run_id`` and follow it to its report (events, spend) as the embedded one.

    Raises:
        ConfigError: Temporal is missing or unreachable.
        InputError: a workflow of this run is still going (wait_run or cancel_run it).
        SubagentMCPError: the workflow failed or was terminated: the run is stored ``interrupted`` (resumable).
    """
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import RPCError

    from .workflow import RunWorkflow

    client = await connect(settings)
    payload = RunInput(
        run_id=run.run_id,
        plan=run.plan,
        options=run.options,
        estimate=run.estimate,
        kept=dict(run.kept),
        spent=run.spent,
        settings=public_settings(settings),
        roles=dict(roles),
    )
    try:
        handle = await client.start_workflow(
            RunWorkflow.run, payload, id=run.run_id, task_queue=settings.temporal_task_queue
        )
    except WorkflowAlreadyStartedError:
        raise InputError(f"run {run.run_id!r} is still running on Temporal; wait_run or cancel_run it first") from None
    except RPCError as exc:
        raise ConfigError(f"Temporal at {settings.temporal_address} refused to start the run: {exc.message}") from None
    return await _follow(handle, store, run.plan, run.kept, listeners)


async def follow_elsewhere(
    settings: Settings,
    store: Store,
    runs: RunRegistry,
    found: tuple[Plan, RunRecord],
    outcome: Callable[[RunReport], Awaitable[Outcome]],
) -> LiveRun | None:
    """Follow a run another server started on Temporal, as if it were this server's (None if it is not running).

    ``wait_run`` and ``cancel_run`` then work through any server: the workflow is the run, not its starter.
    ``outcome`` turns the report into what the run's tool returns (an orchestration's, read from the store).
    """
    plan, record = found
    from .workflow import RunWorkflow

    if not await workflow_running(settings, record.run_id):
        return None
    if (followed := runs.busy(record.run_id)) is not None:  # another call started following it meanwhile
        return followed
    handle = (await connect(settings)).get_workflow_handle_for(RunWorkflow.run, record.run_id)
    kept = {task_id: record.results[task_id] for task_id in record.succeeded_ids()}
    live = LiveRun(record.run_id, "execute", spent=record.total)
    live.expect(plan, kept)

    async def job() -> Outcome:
        return await outcome(await _follow(handle, store, plan, kept, (live.on_event, live.note_spend)))

    return runs.launch(live, job)


async def workflow_running(settings: Settings, run_id: str) -> bool:
    """Whether run ``run_id``'s workflow is running on Temporal (not one that ended, or never started there).

    Raises:
        ConfigError: Temporal could not say (it stopped answering within ``temporal_connect_s``).
    """
    return await workflow_state(settings, run_id) == "running"


WorkflowState = Literal["running", "ended", "not_found"]

START_GRACE_S = 60.0
"""How long after a run is stored (or taken over) for Temporal it may have no workflow yet: its server still
connects (up to ``temporal_connect_s``) and starts it, and another server looking meanwhile must wait."""


async def workflow_gone(settings: Settings, record: RunRecord) -> bool:
    """Whether a run stored ``running`` for Temporal has lost its workflow: it ended without closing the run
    (failed, terminated), or Temporal does not know it and the run was stored longer ago than a start takes.

    Raises:
        ConfigError: Temporal could not say.
    """
    state = await workflow_state(settings, record.run_id)
    if state != "not_found":
        return state == "ended"
    grace = timedelta(seconds=settings.temporal_connect_s + START_GRACE_S)
    return datetime.now(UTC) - record.updated_at > grace  # else its server is still starting it


async def workflow_state(settings: Settings, run_id: str) -> WorkflowState:
    """Whether run ``run_id``'s workflow runs, ended, or is unknown to Temporal: not started yet (its server is
    still starting it), never started there (a run of the embedded executor), or no longer kept.

    Only Temporal's answer counts: any other failure (Temporal down, a timeout) is an error, since callers
    mark a run whose workflow is gone ``interrupted`` and must never do so on a guess.

    Raises:
        ConfigError: Temporal could not say (it stopped answering within ``temporal_connect_s``).
    """
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    handle = (await connect(settings)).get_workflow_handle(run_id)
    why = f"no answer within {settings.temporal_connect_s:g} s"
    try:
        with anyio.fail_after(settings.temporal_connect_s):  # the SDK retries an unreachable server for a while
            described = await handle.describe(rpc_timeout=timedelta(seconds=settings.temporal_connect_s))
        return "running" if described.status == WorkflowExecutionStatus.RUNNING else "ended"
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "not_found"
        why = f"{exc.status.name}: {exc.message[:200]}"
    except TimeoutError:
        pass
    raise ConfigError(
        f"Temporal at {settings.temporal_address} could not say whether run {run_id}'s workflow is running "
        f"({why}); the run is left as it is: try again once Temporal answers"
    )


async def _follow(
    handle: WorkflowHandle[RunWorkflow, str],
    store: Store,
    plan: Plan,
    kept: Mapping[str, SubagentResult],
    listeners: tuple[OnEvent | None, OnSpend | None],
) -> RunReport:
    """Follow a run's workflow to its end: progress as events, cancel on cancel_run, its report from the store."""
    from temporalio.client import WorkflowFailureError

    run_id = handle.id
    follower = Follower(handle, plan, kept, *listeners)
    live = driven_run()
    if live is not None:
        live.refresh = follower.refresh
    outcome: str | WorkflowFailureError | None = None
    try:
        async with anyio.create_task_group() as tg:  # its errors leave it wrapped: keep the outcome instead
            tg.start_soon(follower.poll)
            try:
                outcome = await handle.result()
            except WorkflowFailureError as exc:
                outcome = exc
            tg.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await _stop(handle, live)
        raise
    record = await store.get_run(run_id)
    closed = record is not None and record.report is not None and record.status != "running"
    if isinstance(outcome, WorkflowFailureError) and not closed:  # failed or terminated before closing the run
        await store.interrupt_runs([run_id])
        raise SubagentMCPError(
            f"run {run_id} stopped on Temporal ({outcome.cause or outcome}); what finished is stored, and "
            f"resume_run(run_id={run_id!r}) runs the rest"
        )
    # cancelled (through any server, or by an operator): the workflow closed the run, so it ended like any other
    if record is None or record.report is None:  # the workflow stored it before it ended
        raise SubagentMCPError(f"run {run_id} ended {outcome} on Temporal, but its report is not in the store")
    await follower.finish(record.report)
    return record.report


async def _stop(handle: WorkflowHandle[RunWorkflow, str], live: LiveRun | None) -> None:
    """cancel_run: cancel the workflow and wait for it to store what it has. Shutdown: just stop following."""
    if live is not None and live.stopped == "shutdown":
        live.detached = True
        log.info("run %s goes on on Temporal's workers; this server stops following it", handle.id)
        return
    try:
        await handle.cancel()
        with anyio.move_on_after(CANCEL_GRACE_S):
            await handle.result()
    except Exception as exc:  # a cancelled workflow ends in WorkflowFailureError: that is the point
        log.debug("run %s ended after cancel: %s", handle.id, type(exc).__name__)


class Follower:
    """Turns the workflow's progress snapshots into the executor's events and spend, each told once."""

    def __init__(
        self,
        handle: WorkflowHandle[RunWorkflow, str],
        plan: Plan,
        kept: Mapping[str, SubagentResult],
        on_event: OnEvent | None,
        on_spend: OnSpend | None,
    ) -> None:
        self.handle, self.plan, self.on_event, self.on_spend = handle, plan, on_event, on_spend
        self.started: set[str] = set(kept)
        self.finished: set[str] = set(kept)
        self.spent = Spend()
        self.lock = anyio.Lock()

    async def poll(self) -> None:
        while True:
            await self.refresh()
            await anyio.sleep(POLL_S)

    async def refresh(self) -> None:
        """Read the workflow's progress once (skipped if no worker answers within ``QUERY_S``)."""
        from .workflow import RunWorkflow

        progress: Progress | None = None
        with anyio.move_on_after(QUERY_S):
            try:
                progress = await self.handle.query(RunWorkflow.progress)
            except Exception as exc:  # not started on a worker yet, or no worker: the next poll asks again
                log.debug("progress of %s not readable: %s", self.handle.id, exc)
        if progress is not None:
            await self.apply(progress.results, progress.running, progress.spent)

    async def apply(self, results: Mapping[str, SubagentResult], running: Mapping[str, float], spent: Spend) -> None:
        async with self.lock:
            counts = _counts(len(self.plan.subtasks), results, running)
            for s in self.plan.subtasks:
                if s.id in running and s.id not in self.started:
                    self.started.add(s.id)
                    await self._tell(TaskStarted(task_id=s.id, counts=counts, at_s=running[s.id]))
            for s in self.plan.subtasks:
                result = results.get(s.id)
                if result is not None and s.id not in self.finished:
                    self.finished.add(s.id)
                    await self._tell(TaskFinished(result=result, counts=counts))
            if spent.usage.total_tokens > self.spent.usage.total_tokens:
                if self.on_spend is not None:
                    self.on_spend(_minus(spent, self.spent))
                self.spent = spent

    async def finish(self, report: RunReport) -> None:
        """The last events from the report itself (the last poll may have missed the end), then the run's end."""
        results = {r.task_id: r for r in report.results}
        await self.apply(results, {}, self.spent)
        await self._tell(RunFinished(status=report.status, counts=_counts(len(self.plan.subtasks), results, {})))

    async def _tell(self, event: ExecutorEvent) -> None:
        if self.on_event is not None:
            outcome = self.on_event(event)
            if inspect.isawaitable(outcome):
                await outcome


def _counts(total: int, results: Mapping[str, SubagentResult], running: Mapping[str, float]) -> Counts:
    tally = {status: 0 for status in ("succeeded", "failed", "skipped", "cancelled")}
    for result in results.values():
        tally[result.status] += 1
    in_flight = len([task_id for task_id in running if task_id not in results])
    return Counts(total, len(results), in_flight, **tally)


def _minus(total: Spend, before: Spend) -> Spend:
    """What ``total`` adds to ``before``."""
    return Spend(usage=total.usage - before.usage, cost_usd=total.cost_usd - before.cost_usd)
