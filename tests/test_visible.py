"""``visible``: control characters written out, never obeyed, in terminal text, the progress line and text logs."""

from __future__ import annotations

import io
import json
import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from subagent_mcp.contracts import SubagentResult
from subagent_mcp.core.run_state import Counts, TaskFinished
from subagent_mcp.logs import JsonLines, RedactSecrets, VisibleText
from subagent_mcp.terminal import TerminalProgress
from subagent_mcp.visible import visible, visible_json

OBEYED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""What a terminal acts on rather than prints: C0 but tab and newline, DEL, C1."""
EVIL = "\x1b]0;TITLE\x07\x1b[2J\x1b]52;c;cm0K\x07\r\x1b[Kfake line\x9b31m\x7f"


def test_escape_sequences_are_written_out_byte_for_byte() -> None:
    assert visible(EVIL) == "\\x1b]0;TITLE\\x07\\x1b[2J\\x1b]52;c;cm0K\\x07\\x0d\\x1b[Kfake line\\x9b31m\\x7f"


def test_tabs_newlines_and_every_other_character_stay_as_they_are() -> None:
    text = "Answer:\n\tcafé — 日本 ✓ \\x1b\n"
    assert visible(text) == text
    assert visible("line one\r\nline two\r\n") == "line one\nline two\n"  # a CRLF is a newline, not a CR


def test_one_line_writes_out_newlines_too_so_no_text_starts_a_line_of_its_own() -> None:
    assert visible("name\nFAKE LOG LINE\r\n\tx", one_line=True) == "name\\x0aFAKE LOG LINE\\x0d\\x0a\tx"


@given(st.text(alphabet=st.characters(max_codepoint=0x2FF)), st.booleans())
def test_what_it_returns_holds_nothing_a_terminal_obeys_and_passing_it_again_changes_nothing(
    text: str, one_line: bool
) -> None:
    shown = visible(text, one_line=one_line)
    assert OBEYED.search(shown) is None
    assert ("\n" in shown) is (not one_line and "\n" in text)
    assert visible(shown, one_line=one_line) == shown


@given(st.recursive(st.text(alphabet=st.characters(max_codepoint=0x2FF)), lambda inner: st.lists(inner, max_size=3)))
def test_json_shows_what_its_encoder_leaves_raw_and_still_parses_to_the_exact_data(value: object) -> None:
    document = visible_json(json.dumps(value, ensure_ascii=False))
    assert OBEYED.search(document) is None
    assert json.loads(document) == value


def logger_with(formatter: logging.Formatter, *filters: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    for f in filters:
        handler.addFilter(f)
    logger = logging.getLogger(f"test.visible.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, stream


def test_a_text_log_record_stays_one_line_whatever_its_message_quotes() -> None:
    logger, stream = logger_with(VisibleText("%(levelname)s %(name)s: %(message)s"))
    logger.warning("agent file skipped: %s: %s", f"esc{EVIL}\nWARNING root: FAKE LOG LINE.md", "bad name")
    (line,) = stream.getvalue().splitlines()
    assert OBEYED.search(line) is None
    assert line.startswith("WARNING test.visible.")
    assert "\\x0aWARNING root: FAKE LOG LINE.md: bad name" in line


def test_a_traceback_keeps_its_lines_and_shows_the_escapes_its_message_holds() -> None:
    logger, stream = logger_with(VisibleText("%(message)s"), RedactSecrets(["sk-ant-test-visible-0001"]))
    for _ in range(2):  # the second one's traceback is the redacting filter's text, formatted apart
        try:
            raise RuntimeError(f"model said {EVIL} with sk-ant-test-visible-0001")
        except RuntimeError:
            logger.exception("call failed")
    logged = stream.getvalue()
    assert OBEYED.search(logged) is None
    assert logged.count("Traceback (most recent call last):\n") == 2
    assert logged.count("RuntimeError: model said \\x1b]0;TITLE\\x07") == 2
    assert "sk-ant-test-visible-0001" not in logged


def test_a_json_log_line_holds_no_control_a_terminal_obeys_and_parses_to_the_message() -> None:
    logger, stream = logger_with(JsonLines())
    logger.warning("reply: %s", EVIL)
    (line,) = stream.getvalue().splitlines()
    assert OBEYED.search(line) is None
    assert json.loads(line)["message"] == f"reply: {EVIL}"


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so the progress line redraws in place."""

    def isatty(self) -> bool:
        return True


def test_the_live_progress_line_shows_a_failure_s_escapes_and_draws_only_its_own() -> None:
    screen = Terminal()
    progress = TerminalProgress(screen)
    failed = SubagentResult(task_id="a", role="writer", status="failed", error=f"refused:\n{EVIL}")
    counts = Counts(total=2, done=1, running=1, succeeded=0, failed=1, skipped=0, cancelled=0)
    progress(TaskFinished(counts=counts, result=failed))
    progress.note(f"planned:\n- a: {EVIL}")
    written = screen.getvalue()
    assert written.count("\x1b") == written.count("\r\x1b[K") == 1  # our own: clear the line before the note
    line, notes = written.split("\r\x1b[K")
    assert OBEYED.search(line + notes) is None
    assert "\n" not in line
    note, instructions, end = notes.split("\n")
    assert line.endswith(
        "| a failed: refused: \\x1b]0;TITLE\\x07\\x1b[2J\\x1b]52;c;cm0K\\x07 \\x1b[Kfake line\\x9b31m\\x7f"
    )
    assert (note, end) == ("planned:", "")
    assert instructions.startswith("- a: \\x1b]0;TITLE")
