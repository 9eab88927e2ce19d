"""The one way this server builds an ``AsyncAnthropic`` client: lazily, capped, guarded, and able to redact its key.

Shared by the Messages backend (``anthropic.py``) and the Message Batches adapter (``batch.py``), so both
refuse a non-loopback API the same way while remote requests are off, and redact the same key forms.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from anthropic import AsyncAnthropic

from ..contracts import Completion
from ..errors import ConfigError
from ..redact import all_forms, redact
from ..settings import Settings
from .http_guard import MAX_REPLY_BYTES, guarded_http_client

ALLOW_REMOTE_MODEL_ENV = "SUBAGENT_MCP_ALLOW_REMOTE_MODEL"
ALLOW_REMOTE_MODEL: bool | None = None
"""Like pydantic-ai's ``ALLOW_MODEL_REQUESTS``: True/False wins; None reads the env var (default allowed)."""


def remote_model_allowed() -> bool:
    """Whether requests may go to a non-loopback API (the flag, else ``SUBAGENT_MCP_ALLOW_REMOTE_MODEL``)."""
    if ALLOW_REMOTE_MODEL is not None:
        return ALLOW_REMOTE_MODEL
    return os.environ.get(ALLOW_REMOTE_MODEL_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def is_loopback_url(url: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` base URLs: the fake API, never a billed one."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LazyClient:
    """An ``AsyncAnthropic`` built on first use (never at import), with no SDK retries and replies capped."""

    def __init__(self, settings: Settings, max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self._settings = settings
        self._max_reply_bytes = max_reply_bytes
        self._client: AsyncAnthropic | None = None
        self._key_forms: list[str] = []

    def get(self) -> AsyncAnthropic:
        """The client, built now if need be.

        Raises:
            ConfigError: no API key, or a non-loopback API while remote requests are disallowed.
        """
        if self._client is None:
            key = self._settings.require_api_key().get_secret_value()
            self._key_forms = all_forms([key])
            self._client = AsyncAnthropic(
                api_key=key,
                base_url=self._settings.anthropic_base_url,
                max_retries=0,
                timeout=self._settings.request_timeout_s,
                http_client=guarded_http_client(self._max_reply_bytes),
            )
        base_url = str(self._client.base_url)
        if not remote_model_allowed() and not is_loopback_url(base_url):
            raise ConfigError(
                f"remote model requests are disabled ({ALLOW_REMOTE_MODEL_ENV} is off) and the Anthropic base URL "
                f"{base_url} is not loopback; point ANTHROPIC_BASE_URL at the fake API on 127.0.0.1, or set "
                f"{ALLOW_REMOTE_MODEL_ENV}=1 to allow real (billed) requests"
            )
        return self._client

    def redact(self, text: str) -> str:
        """``text`` with every form of the API key replaced."""
        return redact(text, self._key_forms)

    def redact_reply(self, completion: Completion) -> Completion:
        """``completion`` without the key in what the API wrote (a refusal's explanation, the model, the text)."""
        update = {"text": self.redact(completion.text), "model": self.redact(completion.model)}
        if completion.refusal is not None:
            update["refusal"] = self.redact(completion.refusal)
        return completion.model_copy(update=update)

    async def aclose(self) -> None:
        """Close the HTTP client and its pooled connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()
