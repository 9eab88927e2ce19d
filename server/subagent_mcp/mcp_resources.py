"""Stored plans and runs as MCP resources, so a host can find and attach past work.

``subagent://runs`` lists recent runs; ``subagent://runs/{run_id}`` and ``subagent://plans/{plan_id}``
read one (a run going on in this server with its live progress). The run tools are in ``mcp_runs``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from .background import shown_id
from .contracts import Plan
from .errors import InputError, SubagentMCPError
from .mcp_runs import RunList
from .render import record_breakdown
from .service import Service
from .store import RunRecord

JSON = "application/json"


def register_runs(server: MCPServer[Service], current: Callable[[], Service]) -> None:
    """Add the run and plan resources; ``current`` returns the live service (static resources get no Context)."""

    @server.resource("subagent://runs", name="recent_runs", title="Recent runs", mime_type=JSON)
    async def recent_runs() -> str:
        """The 20 most recent runs with their status, task counts and cost."""
        return RunList(runs=await current().list_runs(20)).model_dump_json(indent=1)

    @server.resource("subagent://runs/{run_id}", name="run", title="One run", mime_type=JSON)
    async def run(run_id: str) -> str:
        """A run's report (or, for an interrupted run, its stored results) with usage of every attempt, and
        its cost per subtask and per model (``cost_breakdown``)."""
        service = current()
        plan, stored = await _run(service, run_id)
        record = stored.model_dump(mode="json")
        record["cost_breakdown"] = record_breakdown(plan, stored, service.settings.prices).model_dump(mode="json")
        live = service.runs.get(run_id)
        if live is not None and not live.done.is_set():
            record["live"] = live.handle(f"wait_run(run_id={run_id!r})").model_dump(mode="json")
        return json.dumps(record, indent=1)

    @server.resource("subagent://plans/{plan_id}", name="plan", title="One plan", mime_type=JSON)
    async def plan(plan_id: str) -> str:
        """A stored plan, as plan_task returned it (without the estimate)."""
        stored = await current().store.get_plan(plan_id)
        if stored is None:
            raise ResourceNotFoundError(f"no plan {shown_id(plan_id)} is stored; read subagent://runs to find runs")
        return stored.model_dump_json(indent=1)


async def _run(service: Service, run_id: str) -> tuple[Plan, RunRecord]:
    try:
        return await service.get_run(run_id)
    except InputError as exc:
        raise ResourceNotFoundError(str(exc)) from None
    except SubagentMCPError as exc:
        raise ResourceError(str(exc)) from None
