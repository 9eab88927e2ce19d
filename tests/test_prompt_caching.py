"""Subtasks sharing a long task mark its end for the prompt cache: one writes it, the others read it, all on record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from subagent_mcp.contracts import Plan, Usage
from subagent_mcp.core.budget import Budget, Limits
from subagent_mcp.core.caching import min_cacheable_tokens
from subagent_mcp.core.pricing import DEFAULT_PRICES
from subagent_mcp.planning import estimate_plan
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeRequest, serve_fake_anthropic

pytestmark = pytest.mark.anyio

HAIKU = "claude-haiku-5-5"
DOCUMENT = "The quarterly report says revenue grew. " * (min_cacheable_tokens(HAIKU) * 4 // 40 + 10)
"""Longer than Haiku's minimum cacheable prefix at any reasonable count of characters per token."""


def plan(task: str, *roles: str) -> Plan:
    subtasks = [
        {"id": f"part-{i}", "role": role, "instructions": f"Review part {i}.", "depends_on": []}
        for i, role in enumerate(roles)
    ]
    return Plan.model_validate({"plan_id": "p-cache", "task": task, "subtasks": subtasks})


def settings(base_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr("k"),
        anthropic_base_url=base_url,
        db_path=str(tmp_path / "runs.db"),
        retry_max_wait_s=0,
        **overrides,
    )


def blocks(request: FakeRequest) -> list[dict[str, Any]]:
    content = request.body["messages"][0]["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


async def test_subtasks_sharing_a_long_task_mark_where_it_ends_and_one_writes_what_the_others_read(
    tmp_path: Path,
) -> None:
    task = f"Summarise this document.\n\n{DOCUMENT}"
    async with serve_fake_anthropic() as fake, Service.open(settings(fake.base_url, tmp_path)) as service:
        report = await service.execute_plan(plan(task, "reviewer", "reviewer", "reviewer"))
    assert report.status == "succeeded"
    for request in fake.message_requests:
        head, own = blocks(request)
        assert head == {"type": "text", "text": f"Task:\n{task}\n\n", "cache_control": {"type": "ephemeral"}}
        assert own["text"].startswith(f"Your subtask ({request.subtask_id}):")
        assert "cache_control" not in own
        assert "cache_control" not in request.body  # never the automatic mark, which writes every suffix
    writes = [u.cache_write_tokens for u in fake.billed]
    reads = [u.cache_read_tokens for u in fake.billed]
    assert sorted(writes) == [0, 0, max(writes)]  # the first goes alone and writes
    assert max(writes) > 0
    assert sorted(reads) == [0, max(writes), max(writes)]  # its twins waited for it, then read
    assert report.usage == fake.billed_usage  # cache reads and writes included


async def test_a_prefix_no_other_subtask_repeats_or_too_short_to_cache_is_not_marked(tmp_path: Path) -> None:
    long_task = f"Summarise this document.\n\n{DOCUMENT}"
    async with serve_fake_anthropic() as fake, Service.open(settings(fake.base_url, tmp_path)) as service:
        await service.execute_plan(plan(long_task, "reviewer", "writer"))  # one subtask per role
        await service.execute_plan(plan("Summarise a short note.", "reviewer", "reviewer"))
    assert all(isinstance(r.body["messages"][0]["content"], str) for r in fake.message_requests)
    assert fake.billed_usage.cache_write_tokens == fake.billed_usage.cache_read_tokens == 0


async def test_with_caching_off_nothing_is_marked(tmp_path: Path) -> None:
    async with (
        serve_fake_anthropic() as fake,
        Service.open(settings(fake.base_url, tmp_path, prompt_cache=False)) as service,
    ):
        await service.execute_plan(plan(f"Summarise.\n\n{DOCUMENT}", "reviewer", "reviewer"))
    assert all(isinstance(r.body["messages"][0]["content"], str) for r in fake.message_requests)


async def test_the_one_hour_ttl_is_sent_on_the_mark_and_priced_at_the_one_hour_write_rate(tmp_path: Path) -> None:
    async with serve_fake_anthropic() as fake:
        s = settings(fake.base_url, tmp_path, prompt_cache_ttl="1h")
        async with Service.open(s) as service:
            report = await service.execute_plan(plan(f"Summarise.\n\n{DOCUMENT}", "reviewer", "reviewer"))
    assert all(blocks(r)[0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"} for r in fake.message_requests)
    writer = next(r for r in report.results if r.usage.cache_write_tokens)
    assert writer.model == HAIKU  # Haiku 5.5: $0.10 input, $0.20 one-hour writes, $0.50 output per MTok
    usage = writer.usage
    expected = usage.input_tokens * 0.10 + usage.cache_write_tokens * 0.20 + usage.output_tokens * 0.50
    assert writer.cost_usd == pytest.approx(expected / 1e6)


def test_the_estimate_prices_one_write_and_reads_for_the_rest_and_its_worst_case_writes_every_time() -> None:
    shared = plan(f"Summarise.\n\n{DOCUMENT}", "reviewer", "reviewer", "reviewer")
    cached = estimate_plan(shared, Settings(), BUILTIN_ROLES)
    plain = estimate_plan(shared, Settings(prompt_cache=False), BUILTIN_ROLES)
    [first] = [t for t in cached.tasks if t.cache_write_tokens]
    rest = [t for t in cached.tasks if t is not first]
    assert first.cache_write_tokens > 0
    assert first.cache_read_tokens == 0
    assert all(t.cache_read_tokens == first.cache_write_tokens and t.cache_write_tokens == 0 for t in rest)
    assert cached.cache_read_tokens == 2 * first.cache_write_tokens
    assert cached.cost_usd < plain.cost_usd  # two reads at 0.1x pay for the one write at 1.25x
    assert all(c.max_cost_usd > p.max_cost_usd for c, p in zip(cached.tasks, plain.tasks, strict=True))


def test_the_budget_holds_a_marked_prefix_at_the_cache_write_price() -> None:
    plain, cached = (Budget(Limits(), DEFAULT_PRICES) for _ in range(2))
    plain.reserve(HAIKU, 10_000, 100)
    cached.reserve(HAIKU, 10_000, 100, cache_write_tokens=8_000)
    # Haiku 5.5: a 5-minute write is $0.125 / MTok against $0.10 for plain input
    assert cached.reserved_usd == pytest.approx(plain.reserved_usd + 8_000 * (0.125 - 0.10) / 1e6)
    assert cached.reserved_tokens == plain.reserved_tokens
    nothing = cached.reserve(HAIKU, 0, 0)
    assert nothing is not None
    cached.settle(nothing, HAIKU, Usage(cache_read_tokens=50_000))
    assert cached.spent_usd == pytest.approx(50_000 * 0.01 / 1e6)  # a read costs a tenth of the input price
