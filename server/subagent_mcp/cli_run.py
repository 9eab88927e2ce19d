"""``subagent-mcp run "task"``: plan, execute and synthesize from a shell with live progress.

Ctrl-C cancels in-flight subagents cleanly and still reports what finished.
"""

from __future__ import annotations

import signal

import anyio

from . import render
from .contracts import OrchestrateResult
from .errors import ModelError, SubagentMCPError
from .service import Service
from .settings import Settings
from .terminal import TerminalProgress

EXIT_INTERRUPTED = 130


async def run_command(
    settings: Settings, task: str, *, as_json: bool, max_subtasks: int | None, max_concurrency: int | None
) -> int:
    """Run ``task`` end to end; the answer (or JSON) goes to stdout, progress and errors to stderr."""
    progress = TerminalProgress()
    outcome: OrchestrateResult | None = None
    error: SubagentMCPError | None = None
    async with Service.open(settings) as service:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_on_sigint, tg.cancel_scope, progress)
            try:
                outcome = await _orchestrate(service, task, progress, max_subtasks, max_concurrency)
            except SubagentMCPError as exc:
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            progress.note(f"subagent-mcp: {error}")
            return 1 if isinstance(error, ModelError) else 2
        if outcome is None:
            return await _report_interrupted(service, progress, as_json)
    if as_json:
        print(outcome.model_dump_json(indent=2))
    else:
        print(render.orchestrate_text(outcome))
    return 0 if outcome.report.status == "succeeded" and outcome.synthesis is not None else 1


async def _orchestrate(
    service: Service, task: str, progress: TerminalProgress, max_subtasks: int | None, max_concurrency: int | None
) -> OrchestrateResult:
    progress.note("planning…")
    plan = await service.plan_task(task, max_subtasks=max_subtasks)
    progress.note(render.plan_text(plan).rsplit("\n", 1)[0])
    report = await service.execute_plan(plan, max_concurrency=max_concurrency, on_event=progress)
    progress.note(f"run {report.status}; synthesizing…")
    try:
        synthesis = await service.synthesize(run_id=report.run_id)
    except ModelError as exc:
        return OrchestrateResult(plan=plan, report=report, synthesis=None, synthesis_error=str(exc))
    progress.add_usage(synthesis.usage, synthesis.cost_usd)
    progress.note(f"done: {progress.usage.total_tokens:,} tokens, ${progress.cost:.4f} in all")
    return OrchestrateResult(plan=plan, report=report, synthesis=synthesis)


async def _cancel_on_sigint(scope: anyio.CancelScope, progress: TerminalProgress) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            progress.note("interrupted: cancelling in-flight subagents…")
            scope.cancel()
            return


async def _report_interrupted(service: Service, progress: TerminalProgress, as_json: bool) -> int:
    """After Ctrl-C: show the run's partial report (it was saved as cancelled), if the run had started."""
    recent = await service.list_runs(1)
    report = (await service.get_run(recent[0].run_id))[1].report if recent else None
    if report is None:
        progress.note("interrupted before the run started; nothing was executed")
        return EXIT_INTERRUPTED
    progress.note(f"resume it with: subagent-mcp run --resume {report.run_id}")
    print(report.model_dump_json(indent=2) if as_json else render.report_text(report))
    return EXIT_INTERRUPTED
