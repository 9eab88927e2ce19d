"""Text made safe to show: control characters from models, files and callers written out, never obeyed.

A model's reply, a plan's instructions or an agent file's name can carry terminal escape sequences (a new
window title, a cleared screen, a clipboard write through OSC 52, a disguised OSC 8 link) or a carriage
return that overwrites the line before it. Every text we print on a terminal, send a host as tool text,
or write to a text log passes ``visible`` at the point it leaves; stored data and structured content keep
the exact characters.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 controls but tab and newline, DEL, and C1 controls (U+0080 to U+009F: 8-bit CSI, OSC, ...)."""
_CONTROLS_AND_NEWLINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def visible(text: str, *, one_line: bool = False) -> str:
    r"""``text`` with every control character written as its escape (ESC as the four characters ``\x1b``).

    Tabs and newlines stay (a CRLF becomes a newline), so multi-line text reads as before; ``one_line``
    escapes newlines too, for a line no text may break (a log record, a listing). Applying it twice changes
    nothing more, so a text may pass it at more than one layer.
    """
    if one_line:
        return _CONTROLS_AND_NEWLINE.sub(_escape, text)
    return _CONTROLS.sub(_escape, text.replace("\r\n", "\n"))


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


_LEFT_RAW_BY_JSON = re.compile("[\x7f-\x9f]")


def visible_json(document: str) -> str:
    r"""A JSON document with DEL and C1 controls written as ``\u`` escapes: the same data, safe on a terminal.

    JSON encoders escape C0 controls but leave these as they are; they can only stand inside strings, so the
    escape is always valid JSON and parses back to the exact text.
    """
    return _LEFT_RAW_BY_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", document)
