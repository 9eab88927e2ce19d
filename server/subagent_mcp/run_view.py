"""The run view: one self-contained HTML page that draws a run, in an MCP Apps host or from a file.

Served as ``ui://subagent-mcp/run`` (``text/html;profile=mcp-app``) and named in the ``_meta.ui`` of the
run tools; hosts without MCP Apps ignore both and show the text results as before. ``page_for`` embeds
a run in the same page for ``subagent-mcp show RUN --html FILE``, with a CSP of its own (a host sets its own).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from mcp.server.apps import Apps

RUN_VIEW_URI = "ui://subagent-mcp/run"
UI_META: dict[str, Any] = {"ui": {"resourceUri": RUN_VIEW_URI}}
"""The ``_meta`` of every tool whose result the view draws (execute_plan, orchestrate, wait_run, resume_run)."""

_CHARSET = '<meta charset="utf-8">'
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
"""The view's own inline script and style (the data block has attributes: it is JSON, never run)."""

_DATA_SLOT = '<script type="application/json" id="run-data">null</script>'


@cache
def view_html() -> str:
    """The view's document, as shipped in the package (``static/run_view.html``)."""
    return resources.files("subagent_mcp").joinpath("static/run_view.html").read_text(encoding="utf-8")


def page_for(data: dict[str, Any]) -> str:
    """The view with ``data`` (what a run tool returns as structured content) embedded, to open offline."""
    payload = json.dumps(data, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):  # no "</script>" can end it early
        payload = payload.replace(char, escaped)
    html = view_html()
    assert _DATA_SLOT in html, "the view lost its data slot"
    html = html.replace(
        _CHARSET, f'{_CHARSET}\n<meta http-equiv="Content-Security-Policy" content="{file_csp(html)}">', 1
    )
    return html.replace(_DATA_SLOT, f'<script type="application/json" id="run-data">{payload}</script>', 1)


@cache
def file_csp(html: str) -> str:
    """The CSP of a page opened from a file (no host to set one): only ``html``'s inline script and style, by hash."""
    allowed: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        allowed[tag].append(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'")
    rules = f"script-src {' '.join(allowed['script'])}; style-src {' '.join(allowed['style'])}"
    return f"default-src 'none'; {rules}; base-uri 'none'; form-action 'none'"


def run_view_extension() -> Apps:
    """The MCP Apps extension serving the view, for ``MCPServer(extensions=[...])`` (it advertises the capability)."""
    apps = Apps()
    apps.add_html_resource(
        RUN_VIEW_URI,
        view_html(),
        name="run_view",
        title="Run view",
        description="A run drawn live: its plan as a graph, each subtask's status, a timeline, totals and the answer.",
        prefers_border=True,
    )
    return apps
