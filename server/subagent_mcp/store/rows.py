"""What both store adapters share: owner ids, lease rules, and the shaping of stored rows into records."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from ..arguments import first_error
from ..contracts import Plan, RunReport, Spend, SubagentResult, Synthesis, Usage
from ..redact import all_forms, redact, url_password
from ..run_options import RunOptions
from .paths import pid_alive
from .records import RunRecord, RunState, StoreError

LEASE_S = 30.0
"""How long a run stays its owner's without a heartbeat; past it, another server may take it over."""

TASK_PREVIEW_CHARS = 80
PG_SCHEMES = ("postgresql://", "postgres://")


def this_machine() -> str:
    """This host's name plus its pid namespace where there is one: two containers sharing a hostname still differ."""
    try:
        namespace = f"/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        namespace = ""
    return f"{socket.gethostname()[:40].replace(':', '-')}{namespace}"


def new_owner_id() -> str:
    """A server's identity in the store: machine and pid (so a restart here sees a dead owner at once) and a nonce."""
    return f"{this_machine()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


TEMPORAL_OWNER_PREFIX = "temporal:"
"""Owner ids of runs Temporal executes: held by their durable workflow, not by any server's lease."""


def temporal_owner(namespace: str, task_queue: str) -> str:
    """The owner of runs on Temporal's ``task_queue``: the servers that start them and the workers that run them."""
    return f"{TEMPORAL_OWNER_PREFIX}{namespace}/{task_queue}"


def is_temporal_owner(owner: str | None) -> bool:
    return owner is not None and owner.startswith(TEMPORAL_OWNER_PREFIX)


def owner_gone(owner: str | None) -> bool:
    """Whether ``owner`` was a process on this machine that no longer exists (its runs need not wait for the lease)."""
    parts = (owner or "").rsplit(":", 2)
    if len(parts) != 3 or parts[0] != this_machine() or not parts[1].isdigit():
        return False
    return not pid_alive(int(parts[1]))


def is_postgres_url(location: str) -> bool:
    return location.startswith(PG_SCHEMES)


def shown_url(url: str) -> str:
    """``url`` with its password replaced, as every message and log line shows it."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    except ValueError:  # an unparsable URL is shown as its scheme only
        return url.split("://", 1)[0] + "://***"


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error) without ``url`` or its password in any form."""
    text = text.replace(url, shown_url(url))
    password = url_password(url)
    return redact(text, all_forms([password])) if password else text


def held(lease_until: datetime | None, owner: str | None, now: datetime, *, pid: int | None = None) -> bool:
    """Whether a ``running`` row's server still holds it: its lease is current and its process is not known dead.

    A run on Temporal is always held (its workflow is durable; a server that finds the workflow gone frees it).
    A row with no lease (from before leases, m005) is held while its ``pid`` lives, when given.
    """
    if is_temporal_owner(owner):
        return True
    if lease_until is None:
        return pid is not None and pid_alive(pid)
    return lease_until > now and not owner_gone(owner)


def effective_status(status: RunState, lease_until: datetime | None, owner: str | None, now: datetime) -> RunState:
    """A ``running`` run no server holds any more is interrupted (its server is gone), whatever the row still says."""
    if status == "running" and lease_until is not None and not held(lease_until, owner, now):
        return "interrupted"
    return status


def preview(task: str) -> str:
    line = " ".join(task.split())
    return line if len(line) <= TASK_PREVIEW_CHARS else line[: TASK_PREVIEW_CHARS - 1] + "…"


def options_json(options: RunOptions) -> str:
    """A run's ``options_json`` column as both adapters write it: its options as one JSON object."""
    return json.dumps(options.model_dump())


def run_options(options_json: str) -> RunOptions:
    """A run's stored options, typed: the one place they are parsed (fields added since a row was written default)."""
    return RunOptions.model_validate_json(options_json)


def planning_cost(options_json: str) -> float:
    """What planning cost, from the stored run options (an orchestrated run's ``prior_spend``)."""
    return run_options(options_json).prior_spend.cost_usd


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def run_record(
    row: Mapping[str, Any],
    lease_until: datetime | None,
    now: datetime,
    results: dict[str, SubagentResult],
    totals: Sequence[Any],
    syntheses: Iterable[Mapping[str, Any]],
) -> RunRecord:
    """A run as both adapters read it: its ``runs`` row, its results, its usage totals and its syntheses.

    ``totals``: the sums of usage_log's input, output, cache read, cache write tokens, cost, web searches and
    fetches, in that order; ``syntheses``: its syntheses rows (json, spend_json, at), oldest first.
    """
    usage = Usage(
        input_tokens=totals[0],
        output_tokens=totals[1],
        cache_read_tokens=totals[2],
        cache_write_tokens=totals[3],
        web_search_requests=totals[5],
        web_fetch_requests=totals[6],
    )
    options = run_options(row["options_json"])
    synthesis, synthesis_spend, concluded = None, Spend(), False
    for s in syntheses:
        synthesis_spend += Spend.model_validate_json(s["spend_json"])
        concluded = row["finished_at"] is not None and s["at"] >= row["finished_at"]
        synthesis = Synthesis.model_validate_json(s["json"]) if concluded and s["json"] else None
    return RunRecord(
        run_id=row["run_id"],
        plan_id=row["plan_id"],
        status=effective_status(row["status"], lease_until, row["owner"], now),
        pid=row["pid"],
        owner=row["owner"],
        lease_until=lease_until,
        cancel_requested=row["cancel_requested_at"] is not None,
        concluded=concluded,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        options=options,
        report=None if row["report_json"] is None else RunReport.model_validate_json(row["report_json"]),
        results=results,
        usage=usage,
        cost_usd=totals[4],
        planning=options.prior_spend,
        synthesis=synthesis,
        synthesis_spend=synthesis_spend,
    )


def stored_plan(plan_id: str, stored: str, path: str) -> Plan:
    """A stored plan's JSON as a Plan, or a ``StoreError`` if it breaks rules added since it was saved."""
    try:
        return Plan.model_validate_json(stored)
    except ValidationError as exc:
        raise StoreError(
            f"The stored plan {plan_id[:100]!r} in {path} no longer passes today's checks "
            f"({first_error(exc)}); run its task again, or pass a corrected copy of the plan.",
            path,
        ) from None
