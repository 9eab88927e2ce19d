"""What batch mode bills against the same work run live: the cost jobs of ``cost.py`` on one fake API.

Each job runs twice through ``Service``: live, then with ``batch=True`` (subtasks as Message Batches,
which the fake bills at half price). Printed per job: what the fake billed each way, the ratio
batch / live for the subtasks (``execute_plan``) and for a whole ``orchestrate`` (planning and synthesis
stay live calls), how many batches the subtasks took, and whether the reported cost equals the bill.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

from subagent_mcp.contracts import OrchestrateResult, Plan
from subagent_mcp.core.pricing import DEFAULT_PRICES, cost_usd
from subagent_mcp.service import Service
from subagent_mcp.testing import FakeAnthropic, serve_fake_anthropic

from .cost import Job, Replies, jobs, settings


def _live_usd(fake: FakeAnthropic) -> float:
    return sum(cost_usd(usage, request.model, DEFAULT_PRICES) for request, usage in fake.answered)


async def _bill(job: Job, db_path: str, *, batch: bool, whole: bool) -> tuple[float, float, int]:
    """(billed USD, reported USD, batches created) for ``job``'s subtasks, or the whole orchestration."""
    async with serve_fake_anthropic(Replies(job)) as fake:
        config = settings(fake.base_url, db_path).model_copy(update={"batch_poll_s": 0.01})
        async with Service.open(config) as service:
            if whole:
                live = await service.start_orchestrate(job.task, max_subtasks=len(job.subtasks), batch=batch)
                out = await service.finish(live)
                assert isinstance(out, OrchestrateResult)
                reported = out.total.cost_usd
            else:
                plan = Plan(plan_id=f"bench-{batch}", task=job.task, subtasks=job.subtasks)
                reported = (await service.execute_plan(plan, batch=batch)).cost_usd
        billed = _live_usd(fake) + fake.batches.billed_usd(DEFAULT_PRICES)
    return billed, reported, len(fake.batches.created)


async def run_all(folder: Path) -> None:
    head = f"{'job':<26}{'what':<13}{'live $':>9}{'batch $':>9}{'ratio':>7}{'batches':>9}{'reported = billed':>19}"
    print("\nbatch mode against live, same plan and replies (one fake API, one price table; ratio = batch / live)")
    print(head)
    print("-" * len(head))
    for i, job in enumerate(jobs()):
        for whole in (False, True):
            db = str(folder / f"{i}-{whole}")
            live, live_reported, _ = await _bill(job, db + "-live.db", batch=False, whole=whole)
            batch, batch_reported, batches = await _bill(job, db + "-batch.db", batch=True, whole=whole)
            same = abs(live - live_reported) < 1e-6 and abs(batch - batch_reported) < 1e-6
            what = "orchestrate" if whole else "subtasks"
            print(
                f"{job.name if not whole else '':<26}{what:<13}{live:>9.4f}{batch:>9.4f}{batch / live:>7.2f}"
                f"{batches:>9}{'yes' if same else 'NO':>19}"
            )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="subagent-batch-cost-") as folder:
        anyio.run(run_all, Path(folder))


if __name__ == "__main__":
    main()
