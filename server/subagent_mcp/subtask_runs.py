"""One subtask of a plan as a run executes it: its context from its dependencies, its request, the call.

Shared by runs in this server (``execution.py``, with a span per subtask) and Temporal workflows
(``temporal/workflow.py``, over a backend whose every call is an activity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from opentelemetry.trace import Span

from .backends.base import ModelBackend
from .contracts import Plan, SubagentResult, Subtask
from .core.context import build_context
from .core.executor import RunTask
from .core.pricing import ModelPrice
from .planning import escalation_model, reused_prefixes, subtask_request
from .roles import Role
from .settings import Settings
from .subagent import run_subtask
from .telemetry import agent_result

Traced = Callable[[Subtask, str], AbstractContextManager[Span]]
"""Opens a subtask's span, given the subtask and its model (``Telemetry.agent`` under the run's span)."""


def subtask_runner(
    plan: Plan,
    kept: Mapping[str, SubagentResult],
    backend: ModelBackend,
    settings: Settings,
    roles: dict[str, Role],
    prices: Mapping[str, ModelPrice] | None = None,
    traced: Traced | None = None,
) -> RunTask:
    """What runs one subtask of ``plan`` through ``backend``: its context, its request, the call (pure but the call).

    ``prices``: what a call costs (default the settings'; batch runs pass batch prices); ``traced``: a span per subtask.
    """
    to_run = [s for s in plan.subtasks if s.id not in kept]
    reused = reused_prefixes(to_run, settings, roles)
    priced = settings.prices if prices is None else prices

    async def run_task(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
        context = build_context(plan.task, [deps[d] for d in subtask.depends_on], settings.context_budget_tokens)
        text = context.render(include_task=False) if subtask.depends_on else None
        request = subtask_request(subtask, plan.task, text, settings, roles, reused=subtask.id in reused)
        escalate_to = escalation_model(subtask, settings, roles)
        if traced is None:
            return await run_subtask(backend, subtask, request, priced, escalate_to)
        with traced(subtask, request.model) as span:
            result = await run_subtask(backend, subtask, request, priced, escalate_to)
            agent_result(span, result)
        return result

    return run_task
