"""The API key is redacted from every log record, whatever logs it and however."""

from __future__ import annotations

import io
import json
import logging

from subagent_mcp.logs import RedactSecrets

KEY = "sk-ant-test-SECRET-123"


def logger_with_redaction() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([KEY]))
    logger = logging.getLogger(f"test.redact.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, stream


def test_the_key_is_redacted_from_messages_and_arguments() -> None:
    logger, stream = logger_with_redaction()
    logger.warning("calling with key %s", KEY)
    logger.warning(f"header Authorization: Bearer {KEY}")
    assert KEY not in stream.getvalue()
    assert stream.getvalue().count("[redacted]") == 2


def test_the_key_is_redacted_from_tracebacks() -> None:
    logger, stream = logger_with_redaction()
    try:
        raise RuntimeError(f"bad key {KEY}")
    except RuntimeError:
        logger.exception("request failed")
    assert "request failed" in stream.getvalue()
    assert "RuntimeError" in stream.getvalue()
    assert KEY not in stream.getvalue()


def test_short_or_empty_secrets_do_not_redact_everything() -> None:
    logger = logging.getLogger("test.redact.short")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(["", "ab"]))
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("about a cab")
    assert stream.getvalue() == "about a cab\n"


def test_json_log_lines_are_parseable_and_still_redacted() -> None:
    from subagent_mcp.logs import JsonLines

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([KEY]))
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("test.redact.json")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("retrying with %s", KEY)
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "test.redact.json"
    assert entry["message"] == "retrying with [redacted]"


def test_a_key_with_a_trailing_newline_is_redacted_in_every_form_a_library_prints_it() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([KEY + "\n"]))
    logger = logging.getLogger("test.redact.forms")
    logger.propagate = False
    logger.addHandler(handler)
    header = f"Bearer {KEY}\n"
    logger.warning("Illegal header value %r", header.encode())  # httpx: b'Bearer sk-...\n'
    logger.warning("key=%r", KEY + "\n")  # a repr: the newline as the two characters \n
    logger.warning("sent %s", KEY)  # stripped, as the settings now send it
    logger.warning("body %s", json.dumps({"authorization": header}))  # JSON-escaped
    logger.warning("raw %s", header)  # as given
    text = stream.getvalue()
    assert "sk-ant" not in text
    assert text.count("[redacted]") == 5
    assert "Illegal header value b'Bearer [redacted]'" in text


def test_the_database_urls_password_is_redacted_on_every_root_handler() -> None:
    from pydantic import SecretStr

    from subagent_mcp.logs import install_redaction
    from subagent_mcp.settings import Settings

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction(Settings(db_url=SecretStr("postgresql://runs:pg-Pass-w0rd-42@db.internal:5432/runs")))
        logging.getLogger("test.redact.db").warning("driver said: password pg-Pass-w0rd-42 rejected")
    finally:
        root.removeHandler(handler)
    assert "pg-Pass-w0rd-42" not in stream.getvalue()
    assert "password [redacted] rejected" in stream.getvalue()
