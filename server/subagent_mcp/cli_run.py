"""The shell commands: ``run "task"`` (or ``run --resume ID``) with live progress, ``runs`` and ``show``.

Ctrl-C cancels in-flight subagents cleanly and still reports what finished (and how to resume it).
Results go to stdout; progress, notes and errors to stderr.
"""

from __future__ import annotations

import json
import signal
import sys

import anyio

from . import render
from .arguments import in_range
from .contracts import OrchestrateResult, Plan, RunReport, Synthesis
from .errors import InputError, ModelError, SubagentMCPError
from .run_view import page_for
from .runs import new_run_id
from .service import Service
from .settings import Settings
from .terminal import TerminalProgress
from .visible import visible, visible_json

EXIT_INTERRUPTED = 130


async def run_command(
    settings: Settings,
    task: str | None,
    *,
    resume: str | None = None,
    as_json: bool,
    max_subtasks: int | None,
    max_concurrency: int | None,
    batch: bool = False,
) -> int:
    """Run ``task`` (or resume run ``resume``) end to end, then synthesize.

    ``batch``: the subtasks go through the Message Batches API (half price); planning and synthesis stay live.
    """
    progress = TerminalProgress()
    run_id = resume or new_run_id()  # known before the run starts, so Ctrl-C reports this run and no other
    outcome: OrchestrateResult | None = None
    error: SubagentMCPError | None = None
    try:
        async with Service.open(settings) as service:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_sigint, tg.cancel_scope, progress)
                try:
                    if resume is not None:
                        outcome = await _resume(service, resume, progress)
                    else:
                        assert task is not None
                        sizes = (max_subtasks, max_concurrency)
                        outcome = await _orchestrate(service, task, run_id, progress, sizes, batch=batch)
                except SubagentMCPError as exc:
                    error = exc
                tg.cancel_scope.cancel()
            if error is not None:
                raise error
            if outcome is None:
                return await _report_interrupted(service, run_id, progress, as_json)
    except SubagentMCPError as exc:
        progress.note(f"subagent-mcp: {exc}")
        return 1 if isinstance(exc, ModelError) else 2
    if as_json:
        print(visible_json(outcome.model_dump_json(indent=2)))
    else:
        _say(render.orchestrate_text(outcome, terminal=True))
    return 0 if outcome.report.status == "succeeded" and outcome.synthesis is not None else 1


async def _orchestrate(
    service: Service,
    task: str,
    run_id: str,
    progress: TerminalProgress,
    sizes: tuple[int | None, int | None],
    *,
    batch: bool = False,
) -> OrchestrateResult:
    max_subtasks, max_concurrency = sizes
    in_range("max_concurrency", max_concurrency, 1, 1024)  # before the planner spends anything
    if batch:
        service.check_batch()
    progress.note("planning…")
    plan = await service.plan_task(task, max_subtasks=max_subtasks, limits=service.ceilings(), run_id=run_id)
    progress.note(render.plan_text(plan).rsplit("\n", 1)[0])
    report = await service.execute_plan(
        plan,
        max_concurrency=max_concurrency,
        on_event=progress,
        run_id=run_id,
        prior_spend=plan.planning,
        keep_for_synthesis=True,
        batch=batch,
    )
    return await _conclude(service, plan, report, progress)


async def _resume(service: Service, run_id: str, progress: TerminalProgress) -> OrchestrateResult:
    plan, record = await service.get_run(run_id)
    kept = len(record.succeeded_ids())
    progress.note(f"resuming {run_id}: {kept} of {len(plan.subtasks)} subtasks already succeeded and are kept")
    ceilings = service.ceilings()  # today's settings: raise one and resume to get past a budget refusal
    report = await service.resume_run(run_id, progress, ceilings.max_cost_usd, ceilings.max_total_tokens)
    prior = record.options.prior_spend  # its planning, if stored, still counts
    if prior.usage.total_tokens:
        plan = plan.model_copy(update={"planning": prior})
    reuse = record.synthesis if kept == len(plan.subtasks) else None  # nothing was left to run: keep its answer
    return await _conclude(service, plan, report, progress, reuse)  # under today's ceilings: raising one helps


async def _conclude(
    service: Service, plan: Plan, report: RunReport, progress: TerminalProgress, reuse: Synthesis | None = None
) -> OrchestrateResult:
    kept = reuse is not None and report.status == "succeeded"
    progress.note(f"run {report.status}; " + ("nothing ran, so its synthesis is kept" if kept else "synthesizing…"))
    outcome = await service.conclude(plan, report, reuse=reuse)
    if outcome.synthesis is None or report.status != "succeeded":
        progress.note(f"to run what did not finish (keeping what did): subagent-mcp run --resume {report.run_id}")
    total = outcome.total
    planning = ", planning included" if plan.planning else ""
    progress.note(f"done: {total.usage.total_tokens:,} tokens, ${total.cost_usd:.4f} in all{planning}")
    return outcome


async def runs_command(settings: Settings, limit: int, *, as_json: bool) -> int:
    """Print recent runs, newest first."""
    try:
        async with Service.open(settings) as service:
            runs = await service.list_runs(limit)
            unplanned = await service.store.failed_planning()
    except SubagentMCPError as exc:
        print(visible(f"subagent-mcp: {exc}"), file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
    elif not runs:
        print("No runs yet.")
    for r in [] if as_json else runs:
        counts = ", ".join(f"{n} {status}" for status, n in r.counts.items())
        _say(
            f"{r.run_id}  {r.created_at:%Y-%m-%d %H:%M}  {r.status:<11}  ${r.total_cost_usd:.4f} in all"
            f"  [{counts}]  {render.one_line(r.task, None)}"
        )
    if unplanned.usage.total_tokens and not as_json:
        print(f"Planner calls that made no plan: {render.usage_line(unplanned.usage, unplanned.cost_usd)}")
    return 0


async def show_command(settings: Settings, run_id: str, *, as_json: bool) -> int:
    """Print one stored run, with its cost per subtask and per model."""
    try:
        async with Service.open(settings) as service:
            plan, record = await service.get_run(run_id)
    except SubagentMCPError as exc:
        print(visible(f"subagent-mcp: {exc}"), file=sys.stderr)
        return 2
    breakdown = render.record_breakdown(plan, record, settings.prices)
    if as_json:
        print(
            json.dumps(
                {**record.model_dump(mode="json"), "cost_breakdown": breakdown.model_dump(mode="json")}, indent=2
            )
        )
        return 0
    _say(f"Task: {plan.task}\nPlan: {plan.plan_id}; run status: {record.status}")
    if record.options.demo:
        print("Demo run: a scripted backend answered and nothing was billed; the costs below are what it would be.")
    if record.report is not None:
        _say(render.report_text(record.report, terminal=True))
    for s in [] if record.report is not None else plan.subtasks:
        r = record.results.get(s.id)
        error = f": {render.one_line(r.error, None)}" if r and r.error else ""
        _say(f"- {s.id} [{s.role}] {r.status if r else 'not run'}{error}")
    if record.synthesis is not None:
        _say(f"\nAnswer:\n{render.synthesis_text(record.synthesis)}\n")
    _say(render.breakdown_text(breakdown))
    _say(render.total_text(record))
    return 0


async def show_html_command(settings: Settings, run_id: str, path: str) -> int:
    """Write one stored run as the run view's page, its data embedded, so any browser shows it offline."""
    try:
        async with Service.open(settings) as service:
            plan, _ = await service.get_run(run_id)
            outcome = await service.outcome(run_id)
    except SubagentMCPError as exc:
        print(visible(f"subagent-mcp: {exc}"), file=sys.stderr)
        return 2
    if isinstance(outcome, RunReport) and not outcome.graph:  # stored before reports carried their graph
        outcome = outcome.model_copy(update={"graph": plan.graph()})
    page = page_for(outcome.model_dump(mode="json"))
    try:
        await anyio.Path(path).write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"subagent-mcp: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"Wrote run {run_id} to {path} ({len(page.encode()):,} bytes); open it in a browser.")
    return 0


async def _cancel_on_sigint(scope: anyio.CancelScope, progress: TerminalProgress) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            progress.note("interrupted: cancelling in-flight subagents…")
            scope.cancel()
            return


async def _report_interrupted(service: Service, run_id: str, progress: TerminalProgress, as_json: bool) -> int:
    """After Ctrl-C: show the run's partial report (it was saved as cancelled), if the run had started."""
    try:
        report = (await service.get_run(run_id))[1].report
    except InputError:  # interrupted while planning: the run was never created
        report = None
    if report is None:
        progress.note("interrupted while planning; no subtask was started")
        return EXIT_INTERRUPTED
    demo = " --demo" if service.settings.demo else ""
    progress.note(f"resume it with: subagent-mcp run{demo} --resume {report.run_id}")
    if as_json:
        print(visible_json(report.model_dump_json(indent=2)))
    else:
        _say(render.report_text(report, terminal=True))
    return EXIT_INTERRUPTED


def roles_command(settings: Settings, *, as_json: bool) -> int:
    """``subagent-mcp roles``: print what list_roles shows; exit 1 if an agent file was skipped (a lint for CI)."""
    from .agents import load_roles
    from .role_catalog import catalog_text

    catalog = load_roles(settings).catalog
    if as_json:
        print(visible_json(catalog.model_dump_json(indent=2)))
    else:
        _say(catalog_text(catalog))
    return 1 if catalog.skipped else 0


def _say(text: str) -> None:
    """Print ``text`` for a person: stored runs and agent files hold what models and files wrote, escapes included."""
    print(visible(text))
