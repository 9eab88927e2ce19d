"""The README's set-up commands are a contract; CI must run the very test command the README gives."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"^TEST_CMD='(.+)'$", ci, re.MULTILINE)
    assert match, ".ci/run must define TEST_CMD='...'"
    readme = (ROOT / "README.md").read_text()
    assert f"&& {match.group(1)}\n" in readme


def test_the_desktop_example_config_is_valid_json_with_a_key_placeholder() -> None:
    import json

    config = json.loads((ROOT / "claude_desktop_config.example.json").read_text())
    server = config["mcpServers"]["subagents"]
    assert server["command"].endswith("subagent-mcp")
    assert "ANTHROPIC_API_KEY" in server["env"]


def test_every_setting_is_in_the_readmes_settings_table() -> None:
    from subagent_mcp.settings import Settings

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings") :]
    names = [name.upper() for name in Settings.model_fields if not name.startswith("anthropic_")]
    undocumented = [n for n in names if not re.search(rf"`(SUBAGENT_MCP_)?{n}`", table)]
    assert undocumented == []


def test_the_readme_has_no_url_placeholders_to_fill_in() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.findall(r"<[\w-]*url>", readme, re.IGNORECASE) == []
