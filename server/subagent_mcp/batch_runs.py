"""How a run uses batch mode: whether it may, its batch backend, its cap, its discount, and cancelling its batches.

The glue between ``execution.py`` and ``batching.py``, so the use cases change by a few lines only.
Batch mode belongs to the embedded executor: another executor refuses ``batch`` with a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager

from .backends.base import ModelBackend
from .batching import BatchBackend, cancel_run_batches
from .contracts import Plan, RunReport
from .core.pricing import ModelPrice, batch_saving
from .errors import InputError
from .settings import Settings
from .store import Store, StoreError

log = logging.getLogger(__name__)

MAX_BATCH_CAP = 1024
"""The executor's cap in batch mode when none is given: every ready subtask goes in the same batch."""

BATCH_WAIT_S = 25 * 3600.0
"""How long a subtask may wait on its batch: the API ends every batch within 24 hours, plus an hour of polling."""


def check_batch_backend(settings: Settings, override: ModelBackend | None) -> None:
    """Refuse batch mode where there is no Message Batches API to send to.

    Raises:
        InputError: the server runs the demo or a test backend.
    """
    if settings.demo or override is not None:
        what = "the demo backend" if settings.demo else "a test backend"
        raise InputError(
            f"batch mode sends subtasks through the Anthropic Message Batches API, and this server runs {what}, "
            "which has none; run without batch, or start the server with an API key"
        )


def batch_cap(batch: bool, plan: Plan, configured: int) -> int:
    """Subtasks in flight at once: in batch mode all that are ready (a batch is one request, not many calls)."""
    return min(MAX_BATCH_CAP, max(configured, len(plan.subtasks))) if batch else configured


def batch_timeout(batch: bool, configured_s: float, layers: int = 1) -> float:
    """A timeout that lets batches finish: in batch mode at least ``BATCH_WAIT_S`` for each of ``layers`` batches."""
    return max(configured_s, BATCH_WAIT_S * max(layers, 1)) if batch else configured_s


def batch_backend(settings: Settings, store: Store, run_id: str) -> BatchBackend:
    """The run's batch backend over the Anthropic Message Batches API (imported here: only batch runs need it)."""
    from .backends.batch import AnthropicBatches

    api = AnthropicBatches(settings)
    return BatchBackend(api, store, run_id, poll_s=settings.batch_poll_s, gather_s=settings.batch_gather_s)


@asynccontextmanager
async def batch_mode(batcher: BatchBackend | None) -> AsyncGenerator[None]:
    """Keep ``batcher`` gathering and polling for the block (nothing to do for a live run)."""
    if batcher is None:
        yield
        return
    async with batcher.running():
        yield


async def note_batch_discount(store: Store, report: RunReport, live_prices: Mapping[str, ModelPrice]) -> RunReport:
    """The report with what the batch discount saved on its results, stored again with it."""
    report = report.model_copy(update={"batch_saved_usd": batch_saving(report.results, live_prices)})
    try:
        await store.finish_run(report.run_id, report)
    except StoreError as exc:  # the run and its results are stored; only this figure is not
        log.warning("the batch discount of run %s could not be stored: %s", report.run_id, exc)
    return report


async def cancel_batches(settings: Settings, store: Store, run_id: str) -> list[str]:
    """Cancel a stopped run's batches still in flight, so what the API has not processed is never billed."""
    if not any(b.status == "in_progress" for b in await store.run_batches(run_id)):
        return []
    from .backends.batch import AnthropicBatches

    return await cancel_run_batches(AnthropicBatches(settings), store, run_id)
