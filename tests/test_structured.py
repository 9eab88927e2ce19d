"""A reply must match its schema; a bad one gets exactly one repair turn, and all usage counts."""

from __future__ import annotations

import pytest

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.contracts import Completion, CompletionRequest, JsonObject, ModelMessage, Usage
from subagent_mcp.errors import InputError, ModelOutputError, ModelRefusalError
from subagent_mcp.safe_output import MAX_DEPTH
from subagent_mcp.schemas import check_output_schema
from subagent_mcp.structured import StructuredOutput, complete_json

pytestmark = pytest.mark.anyio

SCHEMA: JsonObject = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}
REQUEST = CompletionRequest(
    model="m", system="s", messages=[ModelMessage(role="user", content="q")], output_schema=SCHEMA
)


def replies(*texts: str, stop_reason: str = "end_turn") -> ScriptedBackend:
    queue = list(texts)

    def reply(_: CompletionRequest) -> Completion:
        return Completion(
            text=queue.pop(0), stop_reason=stop_reason, usage=Usage(input_tokens=10, output_tokens=5), model="m"
        )

    return ScriptedBackend(reply)


async def test_a_valid_reply_is_returned_without_repair() -> None:
    backend = replies('{"answer": 42}')
    out = await complete_json(backend, REQUEST)
    assert (out.output, out.attempts, out.repaired) == ({"answer": 42}, 1, False)


async def test_invalid_json_gets_one_repair_turn_that_shows_the_error() -> None:
    backend = replies("not json", '{"answer": 1}')
    out = await complete_json(backend, REQUEST)
    assert out.output == {"answer": 1}
    assert out.repaired
    assert out.usage == Usage(input_tokens=20, output_tokens=10)
    repair = backend.seen[1].messages
    assert [m.role for m in repair] == ["user", "assistant", "user"]
    assert repair[1].content == "not json"
    assert "not valid JSON" in repair[2].content


async def test_a_second_invalid_reply_fails_with_both_attempts_counted() -> None:
    backend = replies('{"answer": "x"}', '{"wrong": 1}')
    with pytest.raises(ModelOutputError, match="invalid after 2 tries") as info:
        await complete_json(backend, REQUEST)
    assert len(backend.seen) == 2
    assert info.value.attempts == 2
    assert info.value.usage == Usage(input_tokens=20, output_tokens=10)


async def test_a_max_tokens_cut_off_is_repaired_by_asking_for_brevity() -> None:
    backend = replies('{"answ', '{"answer": 1', stop_reason="max_tokens")
    with pytest.raises(ModelOutputError, match="cut off at the max_tokens limit"):
        await complete_json(backend, REQUEST)
    assert "more concisely" in backend.seen[1].messages[-1].content


async def test_a_refusal_fails_at_once_without_repair() -> None:
    backend = replies("I can't help with that.", stop_reason="refusal")
    with pytest.raises(ModelRefusalError, match="refused"):
        await complete_json(backend, REQUEST)
    assert len(backend.seen) == 1


async def test_an_extra_check_can_demand_a_repair() -> None:
    def even(obj: JsonObject) -> None:
        if obj["answer"] % 2:
            raise ValueError("answer must be even")

    backend = replies('{"answer": 3}', '{"answer": 4}')
    out = await complete_json(backend, REQUEST, even)
    assert out.output == {"answer": 4}
    assert "answer must be even" in backend.seen[1].messages[-1].content


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("a string", "must be a JSON object"),
        ({"type": "array"}, 'set "type": "object"'),
        ({"type": "object", "properties": {"x": {"type": "nonsense"}}}, "not a valid JSON Schema at properties/x/type"),
    ],
)
def test_unusable_output_schemas_are_rejected_with_a_reason(schema: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_output_schema(schema)


ANY_OBJECT = REQUEST.model_copy(update={"output_schema": {"type": "object"}})


def nested(depth: int) -> str:
    """A JSON object whose ``x`` holds arrays nested so that the whole is ``depth`` levels deep."""
    return '{"x": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"


@pytest.mark.parametrize(
    "text",
    ['{"answer": "bad \\udcff"}', '{"answer": "bad \udcff"}', '{"answer": "bad \\ud83d", "\\udcff": "key"}'],
    ids=["escaped-in-the-json", "raw-in-the-text", "half-a-pair-and-a-key"],
)
async def test_a_lone_surrogate_becomes_a_replacement_character_and_the_result_can_be_stored(text: str) -> None:
    out = await complete_json(replies(text), ANY_OBJECT)
    assert out.output["answer"] == "bad \ufffd"
    assert not out.repaired
    stored = out.model_dump_json()  # before: PydanticSerializationError (surrogates not allowed)
    assert StructuredOutput.model_validate_json(stored) == out


async def test_a_split_surrogate_pair_is_joined_back_into_its_character() -> None:
    out = await complete_json(replies('{"answer": "\\ud83d\\ude00"}'), ANY_OBJECT)
    assert out.output == {"answer": "\U0001f600"}


async def test_output_nested_past_the_limit_gets_the_repair_turn_and_then_fails_clearly() -> None:
    backend = replies(nested(250), nested(MAX_DEPTH + 1))
    with pytest.raises(ModelOutputError, match=f"more than {MAX_DEPTH} levels deep; flatten it") as info:
        await complete_json(backend, ANY_OBJECT)
    assert info.value.attempts == 2
    assert f"more than {MAX_DEPTH} levels deep" in backend.seen[1].messages[-1].content


async def test_output_nested_to_the_limit_is_accepted_and_reads_back() -> None:
    out = await complete_json(replies(nested(MAX_DEPTH)), ANY_OBJECT)
    assert StructuredOutput.model_validate_json(out.model_dump_json()) == out


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"answer": NaN}', "holds NaN"),
        ('{"answer": -Infinity}', "holds -Infinity"),
        ('{"answer": 1e400}', "the number 1e400, too large for a float"),
        ('{"answer": ' + "7" * 5000 + "}", "an integer with thousands of digits"),
        (nested(100_000), "levels deep"),
    ],
    ids=["nan", "infinity", "float-overflow", "huge-integer", "deeper-than-pythons-stack"],
)
async def test_numbers_json_does_not_allow_get_the_repair_turn_with_the_reason(text: str, reason: str) -> None:
    backend = replies(text, '{"answer": 1}')
    out = await complete_json(backend, REQUEST)
    assert (out.output, out.repaired) == ({"answer": 1}, True)
    assert reason in backend.seen[1].messages[-1].content


async def test_a_refusal_quoting_a_lone_surrogate_fails_with_an_encodable_message() -> None:
    def refuse(_: CompletionRequest) -> Completion:
        return Completion(text="", stop_reason="refusal", refusal="cyber: bad \udcff", model="m\udcff")

    with pytest.raises(ModelRefusalError) as info:
        await complete_json(ScriptedBackend(refuse), REQUEST)
    assert "cyber: bad \ufffd" in str(info.value)
    str(info.value).encode()
    assert info.value.model is not None
    info.value.model.encode()
