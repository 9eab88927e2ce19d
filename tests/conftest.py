"""Suite-wide rules: async tests run on asyncio, and no test may reach a real model API."""

from __future__ import annotations

import os

import pytest

# Like pydantic-ai's ALLOW_MODEL_REQUESTS: the Anthropic backend refuses any non-loopback base URL
# while this is "0", so a test that forgets the fake API fails at once instead of billing someone.
os.environ["SUBAGENT_MCP_ALLOW_REMOTE_MODEL"] = "0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
