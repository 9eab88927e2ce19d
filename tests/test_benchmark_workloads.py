"""The benchmarks' workloads are valid plans, so `python -m benchmarks` cannot break on a tightened plan rule."""

from __future__ import annotations

import pytest
from benchmarks.dags import Workload, chain_with_branches, fan_out, layered
from benchmarks.service import workloads


@pytest.mark.parametrize(
    "workload",
    [layered(30, 1), layered(100, 2), fan_out(48, 3), chain_with_branches(12, 4)],
    ids=lambda w: w.name,
)
def test_every_workload_family_builds_a_valid_plan(workload: Workload) -> None:
    assert workload.size == len(workload.plan.subtasks) > 0


def test_the_whole_stack_benchmarks_workloads_build_valid_plans() -> None:
    built = workloads(0.1)
    assert [len(w.plan.subtasks) for w in built] == [30, 100, 48, len(built[3].plan.subtasks)]
