"""The errors this package raises on purpose, each with the fields a caller branches on.

    SubagentMCPError
    ├── ConfigError            settings are missing or wrong (e.g. no API key when a model is needed)
    ├── InputError             a tool argument a person must fix (unknown role, malformed schema, empty task)
    ├── PlanError              a plan is not a valid DAG; ``ids`` names the offenders
    ├── StoreError             the run database cannot be opened or written (``store/records.py``)
    ├── RunStopped             a background run was cancelled or interrupted before its result (``background.py``)
    └── ModelError             a model call failed for good; carries ``usage`` and ``attempts`` spent
        ├── ModelRequestError      the API refused the request (4xx other than 408/409/429)
        ├── ModelUnavailableError  transient failures (429, 5xx, connection) outlasted the retry policy
        ├── ModelTimeoutError      a request ran past the configured timeout on every attempt
        ├── ModelRefusalError      the model declined (``stop_reason == "refusal"``)
        ├── ModelOutputError       output was invalid or truncated even after the repair turn
        ├── ModelReplyError        the API's reply could not be used (too large, malformed, impossible usage)
        └── BudgetExceededError    the run's cost or token limit refused the call before it was sent

The MCP layer turns every one of these into a tool error whose message is the exception's text,
so messages are written for a person and never contain secrets.
"""

from __future__ import annotations

from .contracts import Usage
from .safe_output import safe_text


class SubagentMCPError(Exception):
    """Base of every deliberate error; its message is shown to the user as is."""


class ConfigError(SubagentMCPError):
    """The server's configuration cannot serve this request."""


class InputError(SubagentMCPError):
    """A tool argument is invalid in a way the caller can fix."""


class PlanError(SubagentMCPError):
    """A plan failed validation; ``ids`` are the subtask ids at fault."""

    def __init__(self, message: str, ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.ids = ids or []


class ModelError(SubagentMCPError):
    """A model call ended in failure after ``attempts`` HTTP requests that used ``usage``."""

    def __init__(
        self,
        message: str,
        *,
        usage: Usage | None = None,
        attempts: int = 1,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(safe_text(message))  # API error bodies are quoted here: keep the text encodable
        self.usage = usage or Usage()
        self.attempts = attempts
        self.model = model
        self.status_code = status_code
        self.request_id = request_id


class ModelRequestError(ModelError):
    """The API rejected the request; retrying the same request cannot help."""


class ModelUnavailableError(ModelError):
    """Rate limits, overload or connection failures lasted longer than the retry policy."""


class ModelTimeoutError(ModelError):
    """No answer within the configured per-request timeout."""


class ModelRefusalError(ModelError):
    """The model refused to answer."""


class ModelOutputError(ModelError):
    """The model's output did not match the required schema, even after one repair turn."""


class ModelReplyError(ModelError):
    """The API's reply was refused before parsing: too large, malformed, or reporting impossible usage."""


class BudgetExceededError(ModelError):
    """The call was not sent: its worst case could cross the run's cost or token limit."""
