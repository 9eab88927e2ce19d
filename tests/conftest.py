"""Suite-wide rules: async tests run on asyncio, and no test may reach a real model API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Like pydantic-ai's ALLOW_MODEL_REQUESTS: the Anthropic backend refuses any non-loopback base URL
# while this is "0", so a test that forgets the fake API fails at once instead of billing someone.
os.environ["SUBAGENT_MCP_ALLOW_REMOTE_MODEL"] = "0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default database at a temporary folder, so no test touches a user's real runs."""
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.delenv("SUBAGENT_MCP_DB_PATH", raising=False)
    return data


@pytest.fixture(autouse=True)
def private_agent_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in an empty home and working folder, so no one's real .claude/agents becomes a role.

    They sit beside the test's ``tmp_path``, not in it, so tests that list their ``tmp_path`` see only their files.
    """
    home, work = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("cwd")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.delenv("SUBAGENT_MCP_AGENT_DIRS", raising=False)


from executors import executor, temporal_address  # noqa: E402  # fixtures: each contract test on both executors

__all__ = ["executor", "temporal_address"]
