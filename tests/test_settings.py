"""Settings come from the environment, defaults are current models, and the key stays secret."""

from __future__ import annotations

import typing
from pathlib import Path

import anthropic.types
import pytest
from anthropic._data import DEPRECATED_MODELS
from pydantic import SecretStr

from subagent_mcp.contracts import Usage
from subagent_mcp.core.pricing import ModelPrice, cost_usd
from subagent_mcp.errors import ConfigError
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.settings import DEFAULT_STRONG_SUBAGENT_MODEL, Settings


def known_models() -> set[str]:
    literal = typing.get_args(anthropic.types.Model)[0]
    return set(typing.get_args(literal))


def test_default_models_are_current_and_not_deprecated() -> None:
    s = Settings()
    defaults = {s.planner_model, s.subagent_model, s.synthesis_model, DEFAULT_STRONG_SUBAGENT_MODEL}
    assert defaults <= known_models()
    assert not defaults & set(DEPRECATED_MODELS)


def test_every_role_resolves_to_a_priced_model() -> None:
    s = Settings()
    for role in BUILTIN_ROLES.values():
        model = s.model_for_role(role.name, role.tier)
        assert cost_usd(Usage(input_tokens=1_000_000), model, s.prices) > 0, model


def test_environment_variables_with_the_prefix_are_read() -> None:
    s = Settings.from_env(
        {
            "ANTHROPIC_API_KEY": "k",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/",
            "SUBAGENT_MCP_MAX_CONCURRENCY": "3",
            "SUBAGENT_MCP_ROLE_MODELS": "coder=claude-opus-5-5",
            "SUBAGENT_MCP_PRICES": '{"claude-opus-5-5": {"input": 1, "output": 2}}',
        },
        env_file=None,
    )
    assert s.max_concurrency == 3
    assert s.anthropic_base_url == "http://127.0.0.1:9"
    assert s.model_for_role("coder") == "claude-opus-5-5"
    assert s.prices["claude-opus-5-5"] == ModelPrice(input=1, output=2)
    assert "claude-haiku" in s.prices  # defaults kept beside overrides


def test_a_dotenv_file_is_read_under_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SUBAGENT_MCP_MAX_SUBTASKS=5\nSUBAGENT_MCP_MAX_CONCURRENCY=2\n")
    s = Settings.from_env({"SUBAGENT_MCP_MAX_CONCURRENCY": "7"}, env_file=env_file)
    assert (s.max_subtasks, s.max_concurrency) == (5, 7)


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SUBAGENT_MCP_MAX_CONCURRENCY"):
        Settings.from_env({"SUBAGENT_MCP_MAX_CONCURRENCY": "many"}, env_file=None)


def test_a_missing_key_says_which_variable_and_where() -> None:
    with pytest.raises(ConfigError, match=r"ANTHROPIC_API_KEY is not set.*claude_desktop_config\.json"):
        Settings.from_env({}, env_file=None).require_api_key()


def test_the_key_never_shows_in_repr_or_dump() -> None:
    s = Settings.from_env({"ANTHROPIC_API_KEY": "sk-ant-SECRET-42"}, env_file=None)
    assert "SECRET" not in repr(s)
    assert "SECRET" not in s.model_dump_json()


def test_an_optional_limit_can_be_switched_off() -> None:
    s = Settings.from_env({"SUBAGENT_MCP_MAX_RUN_COST_USD": "none"}, env_file=None)
    assert s.max_run_cost_usd is None
    assert Settings.from_env({}, env_file=None).max_run_cost_usd == 5.0


@pytest.mark.parametrize("around", ["\n", "\r\n", " \t", "\n\n"], ids=["lf", "crlf", "space-tab", "two-lf"])
def test_whitespace_a_copy_paste_leaves_around_the_key_is_stripped(around: str) -> None:
    from_env = Settings.from_env({"ANTHROPIC_API_KEY": f"{around}sk-ant-SECRET-42{around}"}, env_file=None)
    direct = Settings(anthropic_api_key=SecretStr(f"sk-ant-SECRET-42{around}"))
    for s in (from_env, direct):
        assert s.require_api_key().get_secret_value() == "sk-ant-SECRET-42"


@pytest.mark.parametrize("inside", ["\n", "\r\n", " ", "\t", "\x00", "\u200b", "é"])
def test_a_key_with_whitespace_or_control_characters_inside_is_refused_without_showing_it(inside: str) -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY has a space, a control character") as caught:
        Settings.from_env({"ANTHROPIC_API_KEY": f"sk-ant-SECRET{inside}42"}, env_file=None)
    assert "SECRET" not in str(caught.value)
    assert "SECRET" not in repr(caught.value)


def test_a_blank_key_counts_as_no_key() -> None:
    s = Settings.from_env({"ANTHROPIC_API_KEY": " \n"}, env_file=None)
    assert s.anthropic_api_key is None
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY is not set"):
        s.require_api_key()


def test_temporal_is_reached_through_its_standard_variables_and_runs_stay_embedded_by_default() -> None:
    default = Settings.from_env({}, env_file=None)
    assert (default.executor, default.temporal_address, default.temporal_namespace) == (
        "embedded", "localhost:7233", "default",
    )  # fmt: skip
    assert default.temporal_task_queue == "subagent-mcp"
    team = Settings.from_env(
        {
            "SUBAGENT_MCP_EXECUTOR": "temporal",
            "TEMPORAL_ADDRESS": "temporal.internal:7233",
            "TEMPORAL_NAMESPACE": "agents",
            "SUBAGENT_MCP_TEMPORAL_TASK_QUEUE": "subagents",
        },
        env_file=None,
    )
    assert (team.executor, team.temporal_address, team.temporal_namespace, team.temporal_task_queue) == (
        "temporal", "temporal.internal:7233", "agents", "subagents",
    )  # fmt: skip
