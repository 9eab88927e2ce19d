"""A tutorial-style orchestrator-workers pipeline: the baseline the cost table compares this project against.

What a minimal tutorial writes: a planner asked for a JSON list of subtasks, workers with one-line
prompts that see the task and their dependencies' outputs cut to 2,000 characters, a synthesizer
that concatenates the outputs; no schemas, no caching, no retries. It runs on the same SDK against
the same fake API as the project, so both are billed by one rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import anyio
from anthropic import AsyncAnthropic
from anthropic.types import TextBlock

CONTEXT_CAP_CHARS = 2_000
"""The tutorial's cap on what a worker sees of its dependencies' outputs (the rest is cut off)."""

PLANNER_SYSTEM = (
    "You are a planner. Break the task into subtasks. Reply with JSON: "
    '{"subtasks": [{"id": "...", "instructions": "...", "depends_on": ["..."]}]}'
)
WORKER_SYSTEM = "You are a helpful assistant. Complete the subtask."
SYNTHESIS_SYSTEM = "Combine the results of the subtasks into a final answer to the task."


@dataclass
class TutorialRun:
    """What the pipeline produced: every output, and how many dependency characters its cap cut off."""

    outputs: dict[str, str] = field(default_factory=dict[str, str])
    answer: str = ""
    context_chars: int = 0
    dropped_chars: int = 0


async def _ask(client: AsyncAnthropic, model: str, system: str, user: str, max_tokens: int) -> str:
    message = await client.messages.create(
        model=model, max_tokens=max_tokens, system=system, messages=[{"role": "user", "content": user}]
    )
    return "".join(b.text for b in message.content if isinstance(b, TextBlock))


async def run_tutorial(
    client: AsyncAnthropic, task: str, planner_model: str, worker_model: str, synthesis_model: str
) -> TutorialRun:
    """Plan, run each wave of ready subtasks concurrently, then synthesize."""
    plan = json.loads(await _ask(client, planner_model, PLANNER_SYSTEM, task, 8192))
    subtasks = {
        str(s["id"]): (str(s["instructions"]), [str(d) for d in s.get("depends_on") or []]) for s in plan["subtasks"]
    }
    run = TutorialRun()

    async def work(task_id: str) -> None:
        instructions, deps = subtasks[task_id]
        context = "\n\n".join(f"{d}: {run.outputs[d]}" for d in deps)
        run.context_chars += len(context)
        run.dropped_chars += max(0, len(context) - CONTEXT_CAP_CHARS)
        user = f"Task: {task}\n\nSubtask: {instructions}"
        if context:
            user += f"\n\nContext from previous steps:\n{context[:CONTEXT_CAP_CHARS]}"
        run.outputs[task_id] = await _ask(client, worker_model, WORKER_SYSTEM, user, 4096)

    while len(run.outputs) < len(subtasks):
        ready = [t for t, (_, deps) in subtasks.items() if t not in run.outputs and all(d in run.outputs for d in deps)]
        async with anyio.create_task_group() as tg:
            for t in ready:
                tg.start_soon(work, t)
    results = "\n\n".join(f"## {t}\n{out}" for t, out in run.outputs.items())
    run.answer = await _ask(client, synthesis_model, SYNTHESIS_SYSTEM, f"Task: {task}\n\nResults:\n{results}", 8192)
    return run
