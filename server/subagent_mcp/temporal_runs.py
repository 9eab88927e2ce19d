"""Runs on Temporal as the service sees them: whose store owns new runs, reaching Temporal before a run is made,
following a run another server started, and freeing runs whose workflow is gone.

A mixin of ``Execution`` (it reads the service's settings, store and run registry); with the embedded executor
each method is a no-op or the plain answer. ``temporal/`` is imported only when the executor is Temporal.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .background import LiveRun, RunRegistry
from .contracts import OrchestrateResult, Plan, RunReport
from .errors import ConfigError
from .handles import RunHandle
from .settings import Settings
from .store import Store, temporal_owner

log = logging.getLogger(__name__)


class TemporalRuns:
    """The Temporal side of ``Execution``; see the module docstring."""

    if TYPE_CHECKING:
        settings: Settings
        store: Store
        runs: RunRegistry

        async def outcome(self, run_id: str) -> RunReport | OrchestrateResult | RunHandle: ...

        async def _stored_plan(self, plan_id: str) -> Plan: ...

    async def live_run(self, run_id: str) -> LiveRun | None:
        """The run as this server knows it; on Temporal also one another server started, followed from here.

        A run held by Temporal whose workflow is gone (failed, terminated) is marked ``interrupted`` here, so
        ``wait_run`` says so and ``resume_run`` takes it over.

        Raises:
            ConfigError: Temporal cannot be reached.
        """
        live = self.runs.get(run_id)
        if live is not None or self.settings.executor != "temporal":
            return live
        record = await self.store.get_run(run_id)
        if record is None or record.status != "running" or record.owner != self.run_store().owner:
            return None
        from .temporal.client import follow_elsewhere

        async def outcome(report: RunReport) -> RunReport | OrchestrateResult:
            stored = await self.outcome(run_id)  # an orchestration's, with its synthesis if it has one by now
            return report if isinstance(stored, RunHandle) else stored

        found = (await self._stored_plan(record.plan_id), record)
        followed = await follow_elsewhere(self.settings, self.run_store(), self.runs, found, outcome)
        if followed is None:  # its workflow ended, or its server has not started it yet
            await self._interrupt_if_gone(run_id)
        return followed

    async def _interrupt_if_gone(self, run_id: str) -> bool:
        """Mark a run whose workflow is gone (``workflow_gone``) ``interrupted`` if it still reads running, so
        resume_run frees it. A workflow closes its run before it ends, so a run still ``running`` after its
        workflow ended failed or was terminated; one whose workflow is not started yet is left alone.

        Raises:
            ConfigError: Temporal could not say.
        """
        from .temporal.client import workflow_gone

        record = await self.store.get_run(run_id)
        if record is None or record.status != "running" or not await workflow_gone(self.settings, record):
            return False
        await self.run_store().interrupt_runs([run_id])
        return True

    async def settle_on_temporal(self, run_ids: list[str]) -> set[str]:
        """Of stored ``running`` runs held by Temporal, those whose workflow is gone, now marked ``interrupted``.

        So ``list_runs`` does not show a failed or terminated workflow's run as running until a wait_run
        looks at it. One describe call per run; if Temporal cannot be reached, nothing is changed.
        """
        if self.settings.executor != "temporal" or not run_ids:
            return set()
        gone: set[str] = set()
        for run_id in run_ids:
            record = await self.store.get_run(run_id)
            if record is None or record.status != "running" or record.owner != self.run_store().owner:
                continue
            try:
                if await self._interrupt_if_gone(run_id):
                    gone.add(run_id)
            except ConfigError as exc:
                log.warning("could not ask Temporal about running runs: %s", exc)
                break
        return gone

    def run_store(self) -> Store:
        """The store as the owner of this server's new runs: on Temporal, Temporal's (its workers finish them)."""
        if self.settings.executor != "temporal":
            return self.store
        return self.store.as_owner(temporal_owner(self.settings.temporal_namespace, self.settings.temporal_task_queue))

    async def _executor_ready(self) -> None:
        """On Temporal, reach it before a run is created or taken over: if it cannot be, the call fails, not a run."""
        if self.settings.executor == "temporal":
            from .temporal.client import connect

            await connect(self.settings)
