"""Suite-wide rules: async tests run on asyncio, and no test may reach a real model API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from subagent_mcp.testing.postgres import (
    TEST_PG_URL_ENV,
    create_database,
    drop_database,
    find_bin_dir,
    throwaway_cluster,
)

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


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A PostgreSQL server to create test databases on: $SUBAGENT_MCP_TEST_PG_URL, else a throwaway local cluster."""
    url = os.environ.get(TEST_PG_URL_ENV)
    if url:
        yield url
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            f"no PostgreSQL: set {TEST_PG_URL_ENV} to a server's superuser URL, or install Debian's postgresql "
            "(.ci/run does) so a throwaway cluster can start"
        )
    with throwaway_cluster(bin_dir) as url:
        yield url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for this test alone (dropped afterwards)."""
    url = anyio.run(create_database, pg_admin_url)
    yield url
    anyio.run(drop_database, pg_admin_url, url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's runs live, once per backend: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "data" / "runs.db")
    return request.getfixturevalue("pg_url")


from executors import executor, temporal_address  # noqa: E402  # fixtures: each contract test on both executors

__all__ = ["executor", "temporal_address"]
