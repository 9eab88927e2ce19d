"""Built-in specialist roles: each a system prompt, a model tier and a default output schema.

To add a role, add a ``Role`` to ``BUILTIN_ROLES`` (or write an agent file, see ``agents``); the planner
offers every role, and ``SUBAGENT_MCP_ROLE_MODELS`` can move any role to another model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .contracts import JsonObject
from .errors import InputError

Tier = Literal["fast", "strong"]

COMMON_RULES = (
    "Do only your subtask of the task. If something you need is missing or elided, say so; don't guess. "
    "Reply with one JSON object matching the schema."
)


def _object(properties: dict[str, Any], required: list[str] | None = None) -> JsonObject:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
        "additionalProperties": False,
    }


_STR: JsonObject = {"type": "string"}
SUMMARY: JsonObject = {"type": "string", "description": "One or two sentences: what you did and found."}
"""Every role's first field: the synthesizer reads a result that later subtasks used by this alone."""
_STR_LIST: JsonObject = {"type": "array", "items": {"type": "string"}}


class Role(BaseModel):
    """A kind of specialist: how it is prompted, which model tier it runs on, what it returns."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    system_prompt: str
    tier: Tier = "fast"
    output_schema: JsonObject
    expected_output_tokens: int = 800
    """The mean reply length, for cost estimates (the worst case uses max_tokens). A mean, not a median:
    reply lengths are right-skewed, and a median here makes estimates run ~10% low (benchmarks/README.md)."""
    model: str | None = None
    """The model id the role's definition asks for (an agent file's ``model``); None: its tier's model."""
    source: str | None = None
    """The agent file the role was read from; None for a built-in role."""
    tools: tuple[str, ...] = ()
    """The tools the definition lists, as written (``WebSearch``, ``Read``, ...); see ``role_catalog``."""
    max_uses: dict[str, int] = Field(default_factory=dict[str, int])
    """Most uses per call of each server tool (``web_search``: 5), from an agent file's ``max_uses``."""


BUILTIN_ROLES: dict[str, Role] = {
    role.name: role
    for role in [
        Role(
            name="researcher",
            description="Gathers facts and evidence; lists what is unknown.",
            system_prompt="You are a careful researcher. State facts precisely and separate them from guesses.",
            output_schema=_object(
                {"summary": SUMMARY, "findings": _STR_LIST, "sources": _STR_LIST, "open_questions": _STR_LIST}
            ),
            expected_output_tokens=1000,
            tools=("web_search", "web_fetch"),
        ),
        Role(
            name="coder",
            description="Writes or changes code to a specification.",
            system_prompt="You are a senior software engineer. Write correct, idiomatic, minimal code.",
            tier="strong",
            output_schema=_object({"summary": SUMMARY, "language": _STR, "code": _STR, "notes": _STR_LIST}),
            expected_output_tokens=1500,
        ),
        Role(
            name="reviewer",
            description="Reviews a draft, design or code; reports issues.",
            system_prompt="You are a rigorous reviewer. Report concrete, actionable issues; no praise padding.",
            output_schema=_object(
                {
                    "summary": SUMMARY,
                    "verdict": {"type": "string", "enum": ["approve", "request_changes"]},
                    "issues": {
                        "type": "array",
                        "items": _object(
                            {"severity": {"type": "string", "enum": ["high", "medium", "low"]}, "description": _STR}
                        ),
                    },
                }
            ),
        ),
        Role(
            name="writer",
            description="Writes prose for an audience: docs, summaries.",
            system_prompt="You are a clear, concise technical writer. Match the audience and format asked for.",
            output_schema=_object({"summary": SUMMARY, "text": _STR}),
            expected_output_tokens=1200,
        ),
        Role(
            name="analyst",
            description="Weighs options and trade-offs; recommends.",
            system_prompt="You are an analyst. Weigh trade-offs explicitly and end with a clear recommendation.",
            output_schema=_object({"summary": SUMMARY, "findings": _STR_LIST, "recommendation": _STR}),
        ),
    ]
}


def get_role(name: str, roles: dict[str, Role] = BUILTIN_ROLES) -> Role:
    """The role called ``name``.

    Raises:
        InputError: no such role; the message lists the roles there are.
    """
    try:
        return roles[name]
    except KeyError:
        raise InputError(f"unknown role {name!r}; available roles: {', '.join(sorted(roles))}") from None
