"""Whole orchestrations and run outcomes: plan, run and synthesize in the background; read a run's result back.

A mixin of ``Service``: it uses the service's planning, execution, synthesis, store and run registry.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .arguments import check_ceilings, in_range, require_text
from .backends.base import ModelBackend
from .backends.budgeted import BudgetedBackend
from .background import LiveRun, Outcome, Watcher
from .contracts import OrchestrateResult, Plan, RunReport, Spend, SubagentResult, Synthesis
from .core.budget import Budget, Limits
from .errors import ModelError
from .execution import Execution
from .handles import RunHandle
from .run_options import RunOptions
from .runs import new_run_id, stored_handle
from .store import RunRecord, is_temporal_owner


class Orchestration(Execution):
    """The orchestration use cases of ``Service``; see the module docstring."""

    if TYPE_CHECKING:

        def ceilings(self, max_cost_usd: float | None = None, max_total_tokens: int | None = None) -> Limits: ...

        def _subtask_limit(self, requested: int | None) -> int: ...

        async def plan_task(
            self,
            task: str,
            max_subtasks: int | None = None,
            roles: list[str] | None = None,
            limits: Limits | None = None,
            run_id: str | None = None,
        ) -> Plan: ...

        async def get_run(self, run_id: str) -> tuple[Plan, RunRecord]: ...

        async def _synthesize(
            self,
            backend: ModelBackend,
            task: str,
            results: list[SubagentResult],
            run_id: str | None,
            graph: dict[str, list[str]] | None = None,
        ) -> Synthesis: ...

    async def orchestrate(
        self,
        task: str,
        max_subtasks: int | None = None,
        max_concurrency: int | None = None,
        watcher: Watcher | None = None,
        *,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
    ) -> OrchestrateResult:
        """Plan, execute and synthesize in one go; a failed synthesis still returns the run's results."""
        live = await self.start_orchestrate(
            task, max_subtasks, max_concurrency, max_cost_usd=max_cost_usd, max_total_tokens=max_total_tokens
        )
        outcome = await self.finish(live, watcher)
        assert isinstance(outcome, OrchestrateResult)
        return outcome

    async def start_orchestrate(
        self,
        task: str,
        max_subtasks: int | None = None,
        max_concurrency: int | None = None,
        batch: bool = False,
        *,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
    ) -> LiveRun:
        """Check the arguments, then plan, run and synthesize in the background; returns the run's handle.

        ``batch``: the subtasks go through the Message Batches API (half price); planning and synthesis stay live.
        ``max_cost_usd`` / ``max_total_tokens`` replace the configured ceilings for the whole orchestration:
        planning, every subtask and the synthesis.

        Raises:
            InputError, ConfigError: before anything runs.
        """
        task = require_text(task, "task")
        self._subtask_limit(max_subtasks)
        in_range("max_concurrency", max_concurrency, 1, 1024)
        check_ceilings(max_cost_usd, max_total_tokens)
        limits = self.ceilings(max_cost_usd, max_total_tokens)
        if batch:
            self.check_batch()  # on Temporal too, before planning spends anything
        _ = self.backend  # a missing key fails now, not in the background
        live = LiveRun(new_run_id(), "orchestrate", phase="planning")

        async def job() -> OrchestrateResult:
            await live.enter("planning", "planning")
            plan = await self.plan_task(task, max_subtasks=max_subtasks, limits=limits, run_id=live.run_id)
            live.expect(plan)
            live.note_spend(plan.planning or Spend())
            live.phase = "running"
            report = await self.execute_plan(
                plan,
                max_concurrency=max_concurrency,
                on_event=live.on_event,
                run_id=live.run_id,
                prior_spend=plan.planning,
                keep_for_synthesis=True,
                on_spend=live.note_spend,
                batch=batch,
                max_cost_usd=limits.max_cost_usd,
                max_total_tokens=limits.max_total_tokens,
            )
            await live.enter("synthesizing", f"run {report.status}; synthesizing")
            result = await self.conclude(plan, report, limits)
            await live.enter("synthesizing", "synthesized" if result.synthesis else "synthesis failed", ended=True)
            return result

        return self.runs.launch(live, job)

    async def resume_orchestration(
        self,
        plan: Plan,
        options: RunOptions,
        run: Callable[[], Awaitable[RunReport]],
        live: LiveRun,
        reuse: Synthesis | None = None,
    ) -> OrchestrateResult:
        """A resumed orchestration (``start_resume``): the rest of its ``run``, then its synthesis, under the run's
        (maybe raised) ceilings; the result ``orchestrate`` returns, as ``outcome`` reads it back elsewhere.

        ``reuse``: the stored synthesis when nothing was left to run; it is kept, at no cost (see ``conclude``).
        """
        report = await run()
        await live.enter("synthesizing", f"run {report.status}; synthesizing")
        plan = plan.model_copy(update={"estimate": self.estimate(plan), "planning": options.prior_spend})  # as planned
        limits = Limits(max_cost_usd=options.max_cost_usd, max_total_tokens=options.max_total_tokens)
        result = await self.conclude(plan, report, limits, reuse=reuse)
        await live.enter("synthesizing", "synthesized" if result.synthesis else "synthesis failed", ended=True)
        return result

    async def finish(self, live: LiveRun, watcher: Watcher | None = None) -> Outcome:
        """Wait for a background run to end and return its outcome; cancelling the wait cancels the run.

        Raises:
            SubagentMCPError: the run failed (e.g. the planner), or was stopped before it had a result.
        """
        try:
            await self.runs.wait(live, math.inf, watcher)
        except BaseException:
            await self.runs.stop(live)
            raise
        if live.error is not None:
            raise live.error
        assert live.outcome is not None
        return live.outcome

    async def conclude(
        self, plan: Plan, report: RunReport, limits: Limits | None = None, *, reuse: Synthesis | None = None
    ) -> OrchestrateResult:
        """Synthesize a finished run (stored with it); if synthesis fails, the run's results come back with why.

        The synthesis call is held to the run ceilings (``limits``, default the configured ones) together
        with the planning and the run, so ``orchestrate`` as a whole stays within them.
        ``total`` is everything the run cost: planning, subtasks and every synthesis of it.
        ``reuse``: a resume that ran nothing passes the run's stored synthesis; if the run succeeded it is
        stored again at no cost (as ``synthesize`` without ``force``) instead of paying for a new one.
        """
        spent = (plan.planning or Spend()) + Spend(usage=report.usage, cost_usd=report.cost_usd)
        budget = Budget(limits or self.ceilings(), self.settings.prices, spent=spent.usage, spent_usd=spent.cost_usd)
        synthesis, error = None, None
        if reuse is not None and report.status == "succeeded":
            synthesis = reuse
            await self.store.save_synthesis(report.run_id, reuse, Spend())  # current again: the run just re-finished
        else:
            try:
                synthesis = await self._synthesize(
                    BudgetedBackend(self.backend, budget), plan.task, report.results, report.run_id, plan.graph()
                )
            except ModelError as exc:
                error = str(exc)
        record = await self.store.get_run(report.run_id)
        total = spent + (record.synthesis_spend if record is not None else Spend())
        return OrchestrateResult(plan=plan, report=report, synthesis=synthesis, synthesis_error=error, total=total)

    async def outcome(self, run_id: str) -> Outcome | RunHandle:
        """A run's result as its tool returned it (with the synthesis for an orchestration), or where it stands.

        Raises:
            InputError: no run with that id.
        """
        plan, record = await self.get_run(run_id)
        report = record.report
        if record.status == "running" or report is None:
            if record.status == "running":
                runner = f"another server ({record.owner or record.pid})"
                if is_temporal_owner(record.owner):
                    runner = f"Temporal ({record.owner})"
                where = f"{runner} runs it; wait_run(run_id={run_id!r}) waits here"
                return stored_handle(plan, record, "running", where)
            return stored_handle(plan, record, "interrupted", f"resume_run(run_id={run_id!r}) continues it")
        if not record.options.orchestrated:
            return report
        plan = plan.model_copy(update={"estimate": self.estimate(plan), "planning": record.planning})  # as planned
        missing = None if record.synthesis else f"not synthesized since it last ran; call synthesize(run_id={run_id!r})"
        return OrchestrateResult(plan=plan, report=report, synthesis=record.synthesis, synthesis_error=missing,
                                 total=record.total)  # fmt: skip

    async def where(self, run_id: str) -> str:
        """One line on where a run that is not live here stands (for a refusal to act on it)."""
        outcome = await self.outcome(run_id)
        if isinstance(outcome, RunHandle):
            return f"it is {outcome.status}; {outcome.next}"
        status = outcome.report.status if isinstance(outcome, OrchestrateResult) else outcome.status
        return f"it ended {status}; wait_run(run_id={run_id!r}) returns its result"
