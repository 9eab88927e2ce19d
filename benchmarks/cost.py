"""What a job costs through this project against a tutorial-style pipeline, at equal models, on one fake API.

Each job is planned, run and synthesized twice against the fake Messages API, which bills every
request by one rule (prompt text at 4 characters a token, prompt caching included, reply text at 4
characters a token) and one price table: once by ``Service.orchestrate`` (every role on the fast
tier, planner and synthesis on the top tier) and once by ``tutorial.run_tutorial`` with the same
models. The fake answers both with the same plan and the same ~600-character outputs.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from anthropic import AsyncAnthropic
from pydantic import SecretStr

from subagent_mcp import prompts
from subagent_mcp.contracts import Subtask, Usage
from subagent_mcp.core.pricing import DEFAULT_PRICES, cost_usd
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic, text_reply

from . import dags, tutorial
from .service import words

TOP, FAST = "claude-opus-5-5", "claude-haiku-5-5"


@dataclass(frozen=True)
class Job:
    """A task, the plan the fake's planner answers with, and the length of every reply."""

    name: str
    task: str
    subtasks: list[Subtask]
    output_chars: int = 600
    summary_chars: int = 100
    """The one-sentence ``summary`` the project's subagents write beside their output (the tutorial's don't)."""
    answer_chars: int = 1200

    def deps(self, task_id: str) -> list[str]:
        return next(s.depends_on for s in self.subtasks if s.id == task_id)


def _subtasks(graph: dict[str, list[str]], seed: str, role: str | None = None) -> list[Subtask]:
    """One subtask per node, each of ``role`` or of a seeded role, with ~160 characters of instructions."""
    rng, text = random.Random(f"roles:{seed}"), random.Random(f"text:{seed}")
    roles = sorted(BUILTIN_ROLES)
    return [
        Subtask(id=t, role=role or rng.choice(roles), instructions=f"[{t}] " + words(160, text), depends_on=d)
        for t, d in graph.items()
    ]


def jobs() -> list[Job]:
    """The issue's jobs (a 6-subtask plan in two layers, a 30-subtask plan, a fan-out over one document), and the
    6-subtask plan again with outputs of a typical role's length."""
    six = {"a": [], "b": [], "c": [], "d": [], "e": ["a", "b"], "f": ["c", "d"]}
    thirty = dags.layered(30, seed=1).plan.graph()
    doc = words(31_000, random.Random("document"))
    fan = {f"part-{i}": [] for i in range(8)}
    return [
        Job("6 subtasks, 2 layers", "Compare SQLite and Postgres for a desktop app.", _subtasks(six, "six")),
        Job(  # the same job with outputs of a role's typical length (~800 tokens) instead of ~150
            "6 subtasks, 800-tok out",
            "Compare SQLite and Postgres for a desktop app.",
            _subtasks(six, "six"),
            output_chars=3_200,
        ),
        Job("30 subtasks, layered", "Write a migration plan for a monolith.", _subtasks(thirty, "thirty")),
        Job("8 over a 31k doc, 1 role", f"Review the document below.\n\n{doc}", _subtasks(fan, "fan", "reviewer")),
        Job("8 over a 31k doc, mixed", f"Review the document below.\n\n{doc}", _subtasks(fan, "fan")),
    ]


@dataclass
class Replies:
    """The fake's handler for both pipelines: the job's plan, then fixed-size outputs, then the answer."""

    job: Job
    texts: dict[str, str] = field(default_factory=dict[str, str])

    def text(self, task_id: str) -> str:
        return self.texts.setdefault(task_id, words(self.job.output_chars, random.Random(task_id)))

    def summary(self, task_id: str) -> str:
        return words(self.job.summary_chars, random.Random(f"summary:{task_id}"))

    def which(self, request: FakeRequest) -> str | None:
        """The subtask a worker request is for (its instructions are unique), or None."""
        first = _first_user_text(request)
        found = [s.id for s in self.job.subtasks if s.instructions in first]
        return found[0] if found else None

    def __call__(self, request: FakeRequest) -> FakeReply:
        schema = request.schema
        props: dict[str, Any] = (schema or {}).get("properties", {})
        if "subtasks" in props:  # the project's planner
            plan = [s.model_dump(include={"id", "role", "instructions", "depends_on"}) for s in self.job.subtasks]
            return json_reply({"subtasks": plan})
        if request.system_text == tutorial.PLANNER_SYSTEM:
            plan = [s.model_dump(include={"id", "instructions", "depends_on"}) for s in self.job.subtasks]
            return text_reply(json.dumps({"subtasks": plan}))
        answer = words(self.job.answer_chars, random.Random("answer"))
        if "gaps" in props:
            return json_reply({"answer": answer, "gaps": []})
        if request.system_text == tutorial.SYNTHESIS_SYSTEM:
            return text_reply(answer)
        task_id = self.which(request)
        assert task_id is not None, "a worker request names no known subtask"
        if schema is None:
            return text_reply(self.text(task_id))
        return json_reply(_shaped(schema, self.text(task_id), self.summary(task_id)))


def _first_user_text(request: FakeRequest) -> str:
    content: Any = request.body["messages"][0]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def _shaped(schema: dict[str, Any], text: str, summary: str) -> dict[str, Any]:
    """The least object ``schema`` allows holding ``text``: ``summary`` in its ``summary`` field, ``text`` in
    its first other string field, or else as the one item of its first list."""
    out: dict[str, Any] = {}
    placed = False
    for name, prop in schema.get("properties", {}).items():
        if "enum" in prop:
            out[name] = prop["enum"][0]
        elif name == "summary":
            out[name] = summary
        elif prop.get("type") == "string":
            out[name], placed = (text, True) if not placed else ("", placed)
        elif prop.get("type") == "array":
            out[name] = []
        else:
            out[name] = None
    if not placed:  # no plain string field: the text goes in the first list, as a string or a shaped item
        name, prop = next((n, p) for n, p in schema.get("properties", {}).items() if p.get("type") == "array")
        items = prop.get("items", {})
        out[name] = [_shaped(items, text, summary) if items.get("type") == "object" else text]
    return out


@dataclass(frozen=True)
class Bill:
    """One pipeline's bill for one job: per call kind, usage and cost; the context it kept or cut."""

    pipeline: str
    calls: dict[str, list[Usage]]
    cost: float
    overhead: dict[str, float]
    """Mean prompt tokens per call beyond its instructions, task and dependency outputs, per call kind."""
    dropped: tuple[int, int] = (0, 0)
    """Dependency characters cut by the context cap, and all dependency characters offered."""

    @property
    def usage(self) -> Usage:
        return sum((u for us in self.calls.values() for u in us), Usage())


def _bill(pipeline: str, job: Job, replies: Replies, answered: Sequence[tuple[FakeRequest, Usage]]) -> Bill:
    calls: dict[str, list[Usage]] = {"planner": [], "subtask": [], "synthesis": []}
    extra: dict[str, list[float]] = {"planner": [], "subtask": [], "synthesis": []}
    cost = 0.0
    for request, usage in answered:
        props = (request.schema or {}).get("properties", {})
        if "subtasks" in props or request.system_text == tutorial.PLANNER_SYSTEM:
            kind, essential = "planner", len(job.task)
        elif "gaps" in props or request.system_text == tutorial.SYNTHESIS_SYSTEM:
            task = job.task if request.schema is None else prompts.synthesis_task(job.task)  # the task it reads
            kind, essential = "synthesis", len(task) + sum(_read(request, replies, s.id) for s in job.subtasks)
        else:
            task_id = replies.which(request)
            assert task_id is not None
            given = sum(len(replies.text(d)) for d in job.deps(task_id))
            if request.schema is None:
                given = min(given, tutorial.CONTEXT_CAP_CHARS)
            own = next(s.instructions for s in job.subtasks if s.id == task_id)
            kind, essential = "subtask", len(job.task) + len(own) + given
        calls[kind].append(usage)
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        extra[kind].append(prompt - essential / 4)
        cost += cost_usd(usage, request.model, DEFAULT_PRICES)
    overhead = {k: sum(v) / len(v) for k, v in extra.items() if v}
    return Bill(pipeline, calls, cost, overhead)


def _read(request: FakeRequest, replies: Replies, task_id: str) -> int:
    """Characters of a subtask's work a synthesis request reads: its output, else its summary alone, else 0."""
    prompt = _first_user_text(request)
    text, summary = replies.text(task_id), replies.summary(task_id)
    return (
        len(text) + (len(summary) if summary in prompt else 0) if text in prompt else len(summary) * (summary in prompt)
    )


def settings(base_url: str, db_path: str) -> Settings:
    fast_roles = dict.fromkeys(BUILTIN_ROLES, FAST)
    return Settings(
        anthropic_api_key=SecretStr("bench"),
        anthropic_base_url=base_url,
        db_path=db_path,
        max_run_cost_usd=None,
        max_subtasks=100,
        planner_model=TOP,
        synthesis_model=TOP,
        subagent_model=FAST,
        role_models=fast_roles,
    )


async def project_bill(job: Job, db_path: str, reads: Literal["final", "all"] = "final") -> Bill:
    """The project's bill; ``reads``: what the synthesizer reads whole (``Settings.synthesis_reads``)."""
    replies = Replies(job)
    async with serve_fake_anthropic(replies) as fake:
        config = settings(fake.base_url, db_path).model_copy(update={"synthesis_reads": reads})
        async with Service.open(config) as service:
            out = await service.orchestrate(job.task, max_subtasks=len(job.subtasks))
        if out.report.status != "succeeded" or out.synthesis is None:
            raise RuntimeError(f"{job.name}: the project's run ended {out.report.status}")
        if out.total.usage != fake.billed_usage:
            raise RuntimeError(f"{job.name}: reported {out.total.usage} but the fake billed {fake.billed_usage}")
    return _bill("project", job, replies, fake.answered)


async def tutorial_bill(job: Job) -> Bill:
    replies = Replies(job)
    async with (
        serve_fake_anthropic(replies) as fake,
        AsyncAnthropic(api_key="bench", base_url=fake.base_url, max_retries=0) as client,
    ):
        run = await tutorial.run_tutorial(client, job.task, TOP, FAST, TOP)
    bill = _bill("tutorial", job, replies, fake.answered)
    return Bill(bill.pipeline, bill.calls, bill.cost, bill.overhead, (run.dropped_chars, run.context_chars))


def render(rows: list[tuple[Job, Bill, Bill]]) -> str:
    head = (
        f"{'job':<26}{'pipeline':<10}{'calls':>6}{'input':>9}{'cache rd':>10}{'cache wr':>10}{'output':>8}"
        f"{'cost $':>10}{'ratio':>7}{'read %':>8}"
    )
    lines = [head, "-" * len(head)]
    for job, ours, theirs in rows:
        for bill in (theirs, ours):
            u = bill.usage
            prompt = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens
            calls = sum(len(v) for v in bill.calls.values())
            ratio = f"{bill.cost / theirs.cost:.2f}" if bill is ours else ""
            lines.append(
                f"{job.name if bill is theirs else '':<26}{bill.pipeline:<10}{calls:>6}{u.input_tokens:>9,}"
                f"{u.cache_read_tokens:>10,}{u.cache_write_tokens:>10,}{u.output_tokens:>8,}{bill.cost:>10.4f}"
                f"{ratio:>7}{100 * u.cache_read_tokens / prompt:>7.0f}%"
            )
    lines.append("\nfixed overhead per call (prompt tokens beyond instructions, task and dependency outputs), mean")
    lines.append(f"{'job':<26}{'pipeline':<10}{'planner':>9}{'subtask':>9}{'synthesis':>10}")
    for job, ours, theirs in rows:
        for bill in (theirs, ours):
            o = bill.overhead
            lines.append(
                f"{job.name if bill is theirs else '':<26}{bill.pipeline:<10}{o.get('planner', 0):>9.0f}"
                f"{o.get('subtask', 0):>9.0f}{o.get('synthesis', 0):>10.0f}"
            )
    lines.append("\nwhat the tutorial's 2,000-character context cap drops (the project's context is whole):")
    for job, _, theirs in rows:
        cut, offered = theirs.dropped
        share = f"{100 * cut / offered:.0f}%" if offered else "-"
        lines.append(f"  {job.name:<26}{cut:>8,} of {offered:>8,} dependency characters cut ({share})")
    for job, ours, _ in rows:
        sub = sum(ours.calls["subtask"], Usage())
        prompt = sub.input_tokens + sub.cache_read_tokens + sub.cache_write_tokens
        lines.append(
            f"  {job.name}: subtask prompts read from cache {100 * sub.cache_read_tokens / prompt:.1f}% "
            f"({sub.cache_read_tokens:,} of {prompt:,} tokens)"
        )
    return "\n".join(lines)


async def run_all(_median_s: float, folder: Path) -> None:
    """Print the cost table; SQLite files go under ``folder``."""
    rows: list[tuple[Job, Bill, Bill]] = []
    whole: list[Bill] = []
    for i, job in enumerate(jobs()):
        rows.append((job, await project_bill(job, str(folder / f"cost-{i}.db")), await tutorial_bill(job)))
        whole.append(await project_bill(job, str(folder / f"cost-all-{i}.db"), reads="all"))
    print("\ncost at equal models against a tutorial-style pipeline (one fake API, one price table)")
    print("ratio = project / tutorial; read % = prompt tokens read from the cache")
    print(render(rows))
    print(
        "\nwith the synthesizer reading every result whole (SUBAGENT_MCP_SYNTHESIS_READS=all), ratio to the tutorial:"
    )
    for (job, _, theirs), bill in zip(rows, whole, strict=True):
        print(f"  {job.name:<26}{bill.cost:>8.4f}{bill.cost / theirs.cost:>7.2f}")


def main() -> None:
    import anyio

    with tempfile.TemporaryDirectory(prefix="subagent-cost-") as folder:
        anyio.run(run_all, 0.0, Path(folder))


if __name__ == "__main__":
    main()
