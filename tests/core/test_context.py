"""A subtask sees every declared dependency, in order, within its token budget, as valid JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from subagent_mcp.contracts import JsonObject, SubagentResult, TaskStatus
from subagent_mcp.core.context import (
    ERROR_NOTE_CHARS,
    DependencyContext,
    build_context,
    estimate_tokens,
    fit_results,
    read_by_summary,
)
from subagent_mcp.core.shrink import STRING_FLOOR, shrink_object

PROSE = " ".join(f"word{i}" for i in range(4_000))  # ~30k characters of cuttable text


def result(
    task_id: str, output: JsonObject | None, status: TaskStatus = "succeeded", error: str | None = None
) -> SubagentResult:
    return SubagentResult(task_id=task_id, role="researcher", status=status, output=output, error=error)


def rendered(ctx: DependencyContext) -> JsonObject:
    doc = json.loads(ctx.render())
    assert isinstance(doc, dict)
    return doc


def walk(value: Any) -> list[Any]:
    """Every value inside ``value``, itself included."""
    out = [value]
    if isinstance(value, dict):
        for v in value.values():
            out.extend(walk(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(walk(v))
    return out


# --- the estimator ---------------------------------------------------------------------------------


def test_estimate_counts_ascii_at_three_and_a_half_chars_and_other_chars_as_one_token_each():
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    assert estimate_tokens("a" * 35) == 10
    assert estimate_tokens("a" * 36) == 11
    assert estimate_tokens("日本語") == 3
    assert estimate_tokens("abcdefg日本") == 2 + 2


# --- fitting -----------------------------------------------------------------------------------------


def test_everything_that_fits_is_included_whole_lean_and_with_no_notes():
    deps = [result("a", {"answer": 42}), result("b", {"items": [1, 2, 3], "text": "short"})]
    ctx = build_context("Count things", deps, 10_000)
    assert [e.inclusion for e in ctx.dependencies] == ["whole", "whole"]
    assert [e.output for e in ctx.dependencies] == [d.output for d in deps]
    assert all(e.note is None for e in ctx.dependencies)
    assert ctx.used_tokens == estimate_tokens(ctx.render()) <= ctx.budget_tokens
    assert rendered(ctx) == {
        "task": "Count things",
        "dependencies": [
            {"task_id": "a", "output": {"answer": 42}},
            {"task_id": "b", "output": {"items": [1, 2, 3], "text": "short"}},
        ],
    }


def test_the_largest_output_is_shrunk_first_and_a_small_one_stays_whole():
    small = result("small", {"answer": "forty-two", "sources": ["a", "b"]})
    huge = result("huge", {"text": PROSE, "n": 5})
    ctx = build_context("task", [small, huge], 1_000)
    kept_small, cut_huge = ctx.dependencies
    assert kept_small.inclusion == "whole"
    assert kept_small.output == small.output
    assert cut_huge.inclusion == "shrunk"
    assert cut_huge.note is not None
    assert "shrunk" in cut_huge.note
    assert "1 long string truncated" in cut_huge.note
    assert estimate_tokens(ctx.render()) <= 1_000
    assert ctx.used_tokens > 600  # the budget is used, not thrown away


def test_shrinking_keeps_every_value_whole_and_of_its_type():
    output: JsonObject = {"text": PROSE, "numbers": list(range(3_000)), "flag": True, "n": 5, "zero": 0}
    ctx = build_context("task", [result("big", output)], 800)
    (entry,) = ctx.dependencies
    assert entry.inclusion == "shrunk"
    cut = entry.output
    assert cut is not None
    assert cut.keys() == output.keys()
    assert (cut["flag"], cut["n"], cut["zero"]) == (True, 5, 0)
    text = cut["text"]
    assert isinstance(text, str)
    head, marker = text.split("… [truncated ", 1)
    assert PROSE.startswith(head)
    assert PROSE[len(head)] == " "  # cut at a word boundary
    assert marker == f"{len(PROSE) - len(head):,} chars]"
    numbers = cut["numbers"]
    assert isinstance(numbers, list)
    *kept, more = numbers
    assert kept == list(range(len(kept)))
    assert more == f"… {3_000 - len(kept):,} more items"


def test_deep_nesting_is_replaced_by_a_short_description():
    deep: JsonObject = {"level1": {"level2": {"level3": {"leaf": PROSE, "other": 1}}}}
    shrunk = shrink_object(deep, 20, estimate_tokens)
    assert shrunk is not None
    assert shrunk.value == {"level1": {"level2": {"level3": "[object with 2 keys elided]"}}}
    assert "1 nested value elided" in shrunk.describe()


def test_very_deep_nesting_is_cut_without_hitting_the_recursion_limit():
    deep: Any = PROSE
    for _ in range(300):
        deep = [deep]
    ctx = build_context("task", [result("deep", {"deep": deep})], 500)
    assert ctx.dependencies[0].inclusion == "shrunk"
    assert "nested value elided" in (ctx.dependencies[0].note or "")
    assert estimate_tokens(ctx.render()) <= 500


def test_wide_objects_keep_their_first_keys_and_say_how_many_went():
    wide: JsonObject = {f"key{i}": i for i in range(500)}
    shrunk = shrink_object(wide, 20, estimate_tokens)
    assert shrunk is not None
    *kept, marker = shrunk.value.items()
    assert kept == [(f"key{i}", i) for i in range(len(kept))]
    assert marker == ("…", f"[{500 - len(kept)} more keys elided]")


def test_a_long_word_is_cut_inside_it_rather_than_far_back():
    shrunk = shrink_object({"blob": "x" * 5_000}, 30, estimate_tokens)
    assert shrunk is not None
    blob = shrunk.value["blob"]
    assert isinstance(blob, str)
    assert blob.startswith("x" * STRING_FLOOR)
    assert blob.endswith("chars]")


def test_an_output_that_cannot_shrink_enough_is_elided_with_its_size_in_the_note():
    wall: JsonObject = {"x" * 2_000: 1}  # one long key: nothing inside can be cut
    ctx = build_context("task", [result("small", {"a": 1}), result("wall", wall)], 120)
    small, elided = ctx.dependencies
    assert small.inclusion == "whole"
    assert elided.inclusion == "elided"
    assert elided.output is None
    assert elided.note == f"output elided for the budget (~{estimate_tokens(json.dumps(wall)):,} tokens)"
    assert not ctx.over_budget
    assert estimate_tokens(ctx.render()) <= 120


def test_dependencies_keep_their_given_order_and_all_appear():
    ids = ["zeta", "alpha", "mid", "beta", "omega"]
    deps = [result(i, {"text": PROSE[: 1_000 * (n + 1)]}) for n, i in enumerate(ids)]
    ctx = build_context("task", deps, 900)
    assert [e.task_id for e in ctx.dependencies] == ids
    assert [d["task_id"] for d in rendered(ctx)["dependencies"]] == ids
    assert estimate_tokens(ctx.render()) <= 900


def test_a_failed_dependency_appears_with_its_status_and_error_as_note():
    deps = [result("ok", {"answer": 1}), result("broken", None, status="failed", error="timed out after 600 s")]
    ctx = build_context("task", deps, 10_000)
    broken = rendered(ctx)["dependencies"][1]
    assert broken == {
        "task_id": "broken",
        "status": "failed",
        "output": None,
        "note": "timed out after 600 s",
    }


def test_empty_fields_of_an_output_are_left_out():
    ctx = build_context("task", [result("a", {"summary": "s", "notes": [], "code": "", "extra": None})], 10_000)
    assert rendered(ctx)["dependencies"] == [{"task_id": "a", "output": {"summary": "s"}}]


def test_a_subtask_reads_an_output_whole_without_its_summary_which_would_say_it_twice():
    ctx = build_context("task", [result("a", {"summary": "s", "text": "the findings"})], 10_000)
    assert rendered(ctx)["dependencies"] == [{"task_id": "a", "output": {"text": "the findings"}}]


def test_a_summary_longer_than_the_rest_of_the_output_holds_content_and_stays():
    ctx = build_context("task", [result("a", {"summary": PROSE, "text": "see summary"})], 10_000)
    assert rendered(ctx)["dependencies"] == [{"task_id": "a", "output": {"summary": PROSE, "text": "see summary"}}]


def test_a_host_sees_an_output_with_its_summary():
    ctx = fit_results("", [result("a", {"summary": "s", "text": "the findings"})], 10_000)
    assert rendered(ctx)["dependencies"] == [{"task_id": "a", "output": {"summary": "s", "text": "the findings"}}]


def test_an_output_shrunk_for_the_budget_keeps_its_summary():
    ctx = build_context("task", [result("a", {"summary": "the gist", "text": PROSE * 20})], 400)
    [entry] = ctx.dependencies
    assert entry.inclusion == "shrunk"
    assert entry.output is not None
    assert entry.output["summary"] == "the gist"


def test_long_error_text_is_cut_in_the_note():
    ctx = build_context("task", [result("broken", None, status="failed", error=PROSE)], 100_000)
    note = ctx.dependencies[0].note
    assert note is not None
    assert len(note) < ERROR_NOTE_CHARS + 40
    assert note.endswith("chars]")


def test_a_skeleton_over_budget_is_returned_with_every_output_elided_and_marked():
    deps = [result(f"t{i}", {"text": PROSE}) for i in range(20)]
    ctx = build_context("task", deps, 50)
    assert ctx.over_budget
    assert [e.inclusion for e in ctx.dependencies] == ["elided"] * 20
    assert all(e.output is None for e in ctx.dependencies)
    doc = rendered(ctx)
    assert "exceed the 50-token budget" in doc["note"]
    assert len(doc["dependencies"]) == 20


def test_render_can_leave_the_task_out_and_still_fits():
    ctx = build_context("a long task statement " * 20, [result("a", {"text": PROSE})], 600)
    without = json.loads(ctx.render(include_task=False))
    assert "task" not in without
    assert without["dependencies"] == rendered(ctx)["dependencies"]
    assert estimate_tokens(ctx.render(include_task=False)) <= estimate_tokens(ctx.render()) <= 600


def test_synthesis_sees_every_result_including_failed_and_skipped_ones():
    results = [
        result("done", {"text": PROSE}),
        result("broken", None, status="failed", error="model refused"),
        result("never", None, status="skipped", error="upstream broken failed"),
        result("stopped", None, status="cancelled"),
    ]
    ctx = fit_results("task", results, 500)
    assert [(e.task_id, e.status) for e in ctx.dependencies] == [
        ("done", "succeeded"),
        ("broken", "failed"),
        ("never", "skipped"),
        ("stopped", "cancelled"),
    ]
    assert [e.note for e in ctx.dependencies[1:]] == [
        "model refused",
        "upstream broken failed",
        "cancelled, no error text recorded",
    ]
    assert ctx.dependencies[0].inclusion == "shrunk"
    assert estimate_tokens(ctx.render()) <= 500


def test_a_hundred_dependencies_fit_a_realistic_budget():
    deps = [result(f"t{i}", {"summary": PROSE[: 200 * i], "points": [PROSE[:300]] * (i % 7)}) for i in range(100)]
    ctx = build_context("task", deps, 24_000)
    assert len(ctx.dependencies) == 100
    assert not ctx.over_budget
    assert 20_000 < ctx.used_tokens <= 24_000
    assert {e.inclusion for e in ctx.dependencies} == {"whole", "shrunk"}


def test_fitting_is_deterministic():
    deps = [result(f"t{i}", {"text": PROSE[: 3_000 * i], "list": list(range(50 * i))}) for i in range(10)]
    assert build_context("task", deps, 2_000) == build_context("task", deps, 2_000)


# --- the property --------------------------------------------------------------------------------

CORPUS = " ".join(["alpha", "beta", "δέλτα", "x" * 70, "gamma\n"] * 300)
prose = st.builds(lambda start, length: CORPUS[start : start + length], st.integers(0, 500), st.integers(0, 3_000))
long_lists = st.builds(lambda n: list(range(n)), st.integers(0, 400))  # cheap to draw, long to cut
keys = st.text(alphabet="abcxyz…日", min_size=1, max_size=4)  # "…" collides with the dropped-keys marker


def objects_of(values: st.SearchStrategy[Any]) -> st.SearchStrategy[JsonObject]:
    """JSON objects drawn as key-value pairs, so a repeated key merges instead of forcing a redraw."""
    return st.lists(st.tuples(keys, values), max_size=6).map(dict)


leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
leaves |= st.text(max_size=20) | prose | long_lists
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=8) | objects_of(inner),
    max_leaves=25,
)
outputs = st.none() | objects_of(json_values)
STATUSES: list[TaskStatus] = ["succeeded", "succeeded", "succeeded", "failed", "skipped"]
statuses = st.sampled_from(STATUSES)


@st.composite
def dependency_lists(draw: st.DrawFn) -> list[SubagentResult]:
    count = draw(st.integers(0, 6))
    return [
        result(f"t{i}", draw(outputs), status=draw(statuses), error=draw(st.none() | st.text(max_size=30)))
        for i in range(count)
    ]


def without_empties(output: JsonObject | None) -> JsonObject | None:
    """What a reader is shown of a whole output: its top-level fields that say something."""
    return None if output is None else {k: v for k, v in output.items() if v not in ("", [], {}, None)}


@settings(max_examples=80, deadline=None)
@given(deps=dependency_lists(), share=st.floats(-0.2, 1.2), task=st.text(max_size=60))
def test_render_is_valid_json_naming_each_dependency_once_within_budget(
    deps: list[SubagentResult], share: float, task: str
):
    # budgets from under the skeleton to over everything, most of them where outputs must be cut
    skeleton, everything = build_context(task, deps, 0).used_tokens, build_context(task, deps, 10**9).used_tokens
    budget = max(0, round(skeleton + share * (everything - skeleton)))
    ctx = build_context(task, deps, budget)
    text = ctx.render()
    doc = json.loads(text)
    assert [d["task_id"] for d in doc["dependencies"]] == [d.task_id for d in deps]
    assert ctx.used_tokens == estimate_tokens(text)
    if ctx.over_budget:
        assert ctx.used_tokens > budget
        assert all(e.output is None or e.inclusion == "whole" for e in ctx.dependencies)
    else:
        assert ctx.used_tokens <= budget
    for dep, entry, shown in zip(deps, ctx.dependencies, doc["dependencies"], strict=True):
        assert (entry.task_id, entry.status) == (dep.task_id, dep.status)
        if entry.inclusion == "whole":
            assert entry.output == shown["output"] == without_empties(dep.output)
        elif entry.inclusion == "shrunk":
            assert isinstance(shown["output"], dict)
            assert entry.note is not None
        else:
            assert shown["output"] is None
            assert entry.note is not None
            assert "elided for the budget" in entry.note
        if dep.status != "succeeded":
            assert entry.note is not None


@settings(max_examples=80, deadline=None)
@given(value=objects_of(json_values), target=st.integers(0, 400))
def test_shrinking_never_cuts_a_value_mid_way(value: JsonObject, target: int):
    shrunk = shrink_object(value, target, estimate_tokens)
    if shrunk is None:
        return
    assert estimate_tokens(json.dumps(shrunk.value, ensure_ascii=False, separators=(",", ":"))) <= target
    originals = {(type(o), repr(o)) for o in walk(value) if not isinstance(o, (dict, list))}
    for part in walk(shrunk.value):
        if isinstance(part, (dict, list)) or (type(part), repr(part)) in originals:
            continue
        assert isinstance(part, str), part  # numbers, booleans and nulls are never altered
        assert (  # a new string is a cut one or a marker
            "… [truncated " in part
            or (part.startswith("… ") and part.endswith((" more item", " more items")))
            or (part.startswith("[") and part.endswith(" elided]"))
        ), part


# The synthesizer reads a result that later subtasks used by its summary (SUBAGENT_MCP_SYNTHESIS_READS=final).

FULL = {"summary": "Postgres wins for teams.", "findings": ["finding one", "finding two"]}
CHAIN = {"a": [], "b": [], "e": ["a", "b"]}


def test_a_result_every_user_of_which_succeeded_is_read_by_summary_and_a_final_one_whole() -> None:
    results = [result("a", FULL), result("b", FULL), result("e", FULL)]
    assert read_by_summary(results, CHAIN) == ["a", "b"]
    doc = rendered(fit_results("task", results, 10_000, ["a", "b"]))
    assert doc["dependencies"] == [
        {"task_id": "a", "summary": "Postgres wins for teams."},
        {"task_id": "b", "summary": "Postgres wins for teams."},
        {"task_id": "e", "output": FULL},
    ]


def test_a_result_that_a_failed_or_skipped_subtask_needed_is_read_whole() -> None:
    graph = {"a": [], "b": [], "e": ["a", "b"], "f": ["b"]}
    results = [result("a", FULL), result("b", FULL), result("e", FULL), result("f", None, "failed", "boom")]
    assert read_by_summary(results, graph) == ["a"]  # b's content reached e, but not f


def test_a_result_with_no_summary_or_nothing_beside_it_or_that_failed_is_read_whole() -> None:
    results = [
        result("a", {"findings": ["no summary field"]}),
        result("b", {"summary": "only a summary", "findings": []}),
        result("c", {"summary": "  ", "findings": ["blank summary"]}),
        result("d", None, "failed", "boom"),
        result("e", FULL),
    ]
    assert read_by_summary(results, {"a": [], "b": [], "c": [], "d": [], "e": ["a", "b", "c", "d"]}) == []


def test_results_without_a_graph_entry_for_their_users_are_read_whole() -> None:
    results = [result("a", FULL), result("e", FULL)]
    assert read_by_summary(results, {"a": [], "e": []}) == []
    assert read_by_summary(results, {"a": [], "x": ["a"]}) == []  # its user has no result here


def test_a_summarized_result_is_cheaper_and_still_fits_a_small_budget() -> None:
    big = {"summary": "short", "text": PROSE}
    results = [result("a", big), result("e", FULL)]
    whole, summarized = (fit_results("t", results, 100_000, s) for s in ((), ["a"]))
    assert summarized.used_tokens < whole.used_tokens // 50
    assert PROSE not in summarized.render()
    small = fit_results("t", [result("a", {"summary": PROSE, "text": "x"})], 300, ["a"])
    assert small.used_tokens <= 300  # a long summary is shrunk like any output
    assert small.dependencies[0].inclusion == "shrunk"
