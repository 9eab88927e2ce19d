"""Logging to stderr with the API key redacted from every record, whoever logs it.

stdout is the protocol in stdio mode, so no handler here ever writes to it.
"""

from __future__ import annotations

import json
import logging
import sys

from .redact import all_forms, redact, url_password
from .settings import Settings
from .visible import visible, visible_json


class RedactSecrets(logging.Filter):
    """Replace each secret, in every form it can take (``redact.secret_forms``), before any handler formats it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.forms = all_forms(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.forms:
            return True
        message = record.getMessage()
        redacted = redact(message, self.forms)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            redacted = redact(text, self.forms)
            if redacted != text:
                record.exc_info, record.exc_text = None, redacted
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record (time, level, logger, message, exception), for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return visible_json(json.dumps(entry, ensure_ascii=False))


class VisibleText(logging.Formatter):
    """A text log line per record, its message on that one line with control characters made visible.

    A message quotes names and text from outside (an agent file's name, a model's error): an escape sequence
    there would act on the terminal, a newline would forge a log line. A traceback keeps its lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return visible(super().formatMessage(record), one_line=True)

    def format(self, record: logging.LogRecord) -> str:
        line, newline, rest = super().format(record).partition("\n")  # the first newline ends the message
        return line + newline + visible(rest)


def configure_logging(settings: Settings) -> None:
    """Send our logs to stderr at the configured level and format, and redact secrets on every root handler."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        root.addHandler(handler)
    if settings.log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonLines())
    else:
        for handler in root.handlers:
            if handler.formatter is None:
                handler.setFormatter(VisibleText("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("subagent_mcp").setLevel(settings.log_level)
    install_redaction(settings)


def secret_values(settings: Settings) -> list[str]:
    """The secrets in ``settings``: the API keys, HTTP token, mTLS key and the database URL's password."""
    keys = (
        settings.anthropic_api_key,
        settings.http_token,
        settings.temporal_api_key,
        settings.temporal_tls_client_key_data,
    )
    secrets = [s.get_secret_value() for s in keys if s is not None]
    if settings.db_url is not None:  # the database URL's password, in every form
        secrets += [p for p in [url_password(settings.db_url.get_secret_value())] if p]
    return secrets


def install_redaction(settings: Settings) -> None:
    """Attach the filter redacting the API keys, HTTP token and mTLS key to every root logger handler (idempotent)."""
    secrets = secret_values(settings)
    for handler in logging.getLogger().handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactSecrets)]
        handler.addFilter(RedactSecrets(secrets))
