"""A plan is a valid DAG or it is not constructed, and the error names the offending ids."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from subagent_mcp.contracts import Plan, Usage


def plan(*subtasks: tuple[str, list[str]], **kw: Any) -> Plan:
    return Plan.model_validate(
        {
            "plan_id": "p1",
            "task": "t",
            "subtasks": [{"id": i, "role": "writer", "instructions": "do it", "depends_on": d} for i, d in subtasks],
        },
        **kw,
    )


def test_a_valid_dag_is_accepted() -> None:
    p = plan(("a", []), ("b", ["a"]), ("c", ["a", "b"]))
    assert p.graph() == {"a": [], "b": ["a"], "c": ["a", "b"]}


def test_an_empty_plan_is_rejected() -> None:
    with pytest.raises(ValidationError, match="no subtasks"):
        plan()


def test_duplicate_ids_are_named() -> None:
    with pytest.raises(ValidationError, match="duplicate subtask ids: a"):
        plan(("a", []), ("a", []))


def test_unknown_dependencies_are_named_with_their_dependent() -> None:
    with pytest.raises(ValidationError, match=r"unknown dependency ids: b -> ghost"):
        plan(("a", []), ("b", ["ghost"]))


def test_self_dependency_is_named() -> None:
    with pytest.raises(ValidationError, match="depend on themselves: a"):
        plan(("a", ["a"]))


def test_a_cycle_is_listed_in_order() -> None:
    with pytest.raises(
        ValidationError, match=r"dependency cycle: (a -> c -> b -> a|b -> a -> c -> b|c -> b -> a -> c)"
    ):
        plan(("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", []))


def test_the_configured_maximum_rejects_oversized_plans() -> None:
    with pytest.raises(ValidationError, match="3 subtasks, more than the maximum of 2"):
        plan(("a", []), ("b", []), ("c", []), context={"max_subtasks": 2})


def test_ids_must_be_short_slugs() -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        plan(("Not A Slug", []))


def test_unknown_fields_are_rejected_so_typos_surface() -> None:
    with pytest.raises(ValidationError, match="depends"):
        Plan.model_validate(
            {
                "plan_id": "p",
                "task": "t",
                "subtasks": [{"id": "a", "role": "writer", "instructions": "x", "depends": []}],
            }
        )


def test_usage_adds_up_field_by_field() -> None:
    total = Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3) + Usage(input_tokens=10, cache_write_tokens=4)
    assert total == Usage(input_tokens=11, output_tokens=2, cache_read_tokens=3, cache_write_tokens=4)
    assert total.total_tokens == 20


@pytest.mark.parametrize("hint", [0, -5, 10_000_000])
def test_an_expected_output_length_must_be_a_plausible_token_count(hint: int) -> None:
    with pytest.raises(ValidationError, match="expected_output_tokens"):
        Plan.model_validate(
            {
                "plan_id": "p",
                "task": "t",
                "subtasks": [
                    {"id": "a", "role": "writer", "instructions": "x", "depends_on": [], "expected_output_tokens": hint}
                ],
            }
        )


def test_a_dependency_listed_twice_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="subtask b lists 'a' twice in depends_on; list each dependency once"):
        plan(("a", []), ("b", ["a", "a"]))


def test_a_dependency_listed_ten_thousand_times_is_refused_in_a_short_message() -> None:
    with pytest.raises(ValidationError, match="subtask b lists 'a' 10,000 times in depends_on") as info:
        plan(("a", []), ("b", ["a"] * 10_000))
    assert len(str(info.value)) < 500


@pytest.mark.parametrize("plan_id", ["a/b", "../../etc/passwd", ".hidden", "", "has space", "x" * 101, "plan\n2"])
def test_a_plan_id_outside_the_safe_alphabet_is_refused_with_the_rule(plan_id: str) -> None:
    with pytest.raises(
        ValidationError, match=r"is not a usable id: use letters, digits, '-', '_' and '\.' \(not first\)"
    ):
        Plan.model_validate(
            {"plan_id": plan_id, "task": "t", "subtasks": [{"id": "a", "role": "writer", "instructions": "x"}]}
        )


@pytest.mark.parametrize("plan_id", ["plan-0a1b2c3d4e5f", "My_Plan.v2", "-x", "x" * 100])
def test_plan_ids_from_the_safe_alphabet_are_accepted(plan_id: str) -> None:
    subtasks = [{"id": "a", "role": "writer", "instructions": "x"}]
    assert Plan.model_validate({"plan_id": plan_id, "task": "t", "subtasks": subtasks}).plan_id == plan_id


def chain(n: int, *, closed: bool) -> list[tuple[str, list[str]]]:
    """n subtasks, each depending on the next; the last depends on the first when ``closed``."""
    return [(f"n{i}", [f"n{i + 1}"] if i + 1 < n else (["n0"] if closed else [])) for i in range(n)]


@pytest.mark.parametrize(
    ("subtasks", "message"),
    [
        (chain(10_000, closed=True), "dependency cycle: n0 -> n1 -> "),
        ([(f"s{i}", [f"ghost{i}"]) for i in range(10_000)], "unknown dependency ids: s0 -> ghost0, s1 -> ghost1"),
        ([(f"s{i % 5_000}", []) for i in range(10_000)], "duplicate subtask ids: s0, s1, s2"),
        ([(f"s{i}", [f"s{i}"]) for i in range(10_000)], "subtasks depend on themselves: s0, s1, s2"),
    ],
)
def test_errors_about_a_huge_plan_list_the_first_twenty_ids_and_count_the_rest(
    subtasks: list[tuple[str, list[str]]], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        plan(*subtasks)
    text = str(info.value)
    assert message in text
    assert len(text) < 2_000
    assert " more" in text


def test_a_cycle_of_ten_thousand_says_how_many_ids_it_left_out() -> None:
    with pytest.raises(ValidationError, match=r"n18 -> n19 and 9,981 more; a plan must be acyclic"):
        plan(*chain(10_000, closed=True))


def test_contracts_holds_the_models_and_no_re_exported_helpers() -> None:
    import subagent_mcp.contracts as contracts

    assert not hasattr(contracts, "some_of"), "import some_of from subagent_mcp.core.dag_checks"
