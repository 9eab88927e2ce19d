"""The run view as the protocol carries it: tools name it, resources/read serves it, it fetches nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.compact import MAX_RESULT_TOKENS, fit_for_host
from subagent_mcp.contracts import Usage
from subagent_mcp.core.context import estimate_tokens
from subagent_mcp.handles import RunHandle, TaskProgress
from subagent_mcp.mcp_server import create_server
from subagent_mcp.run_view import RUN_VIEW_URI, page_for, view_html
from subagent_mcp.settings import Settings

pytestmark = pytest.mark.anyio

APP_MIME = "text/html;profile=mcp-app"
VIEWED = {"execute_plan", "orchestrate", "wait_run", "resume_run"}


def server() -> Any:
    return create_server(Settings.from_env({}, env_file=None), ScriptedBackend())


async def test_the_run_tools_name_the_view_and_the_others_do_not() -> None:
    async with Client(server()) as c:
        tools = (await c.list_tools()).tools
    named = {t.name: (t.meta or {}).get("ui", {}).get("resourceUri") for t in tools}
    assert {name for name, uri in named.items() if uri} == VIEWED
    assert {named[name] for name in VIEWED} == {RUN_VIEW_URI}


async def test_the_server_offers_mcp_apps_and_serves_the_view_as_an_app_document() -> None:
    async with Client(server()) as c:
        extensions = c.server_capabilities.extensions if c.server_capabilities else None
        read = await c.read_resource(RUN_VIEW_URI)
    assert extensions is not None
    assert "io.modelcontextprotocol/ui" in extensions
    [content] = read.contents
    assert content.mime_type == APP_MIME
    html = getattr(content, "text", "")
    assert html == view_html()
    assert html.startswith("<!doctype html>")
    assert "ui/initialize" in html
    assert "ui/notifications/size-changed" in html


EXTERNAL = re.compile(
    r"""(?:\bsrc\s*=|\bhref\s*=|url\s*\((?!\s*#)|@import|https?://|//[a-z0-9.-]+\.[a-z]{2,}/)""", re.I
)


def test_the_view_references_nothing_outside_itself() -> None:
    """A host's default CSP forbids other origins: no script, style, font, image or link to fetch."""
    html = view_html().replace('"http://www.w3.org/2000/svg"', '"SVG-NAMESPACE"')  # a name, never fetched
    assert EXTERNAL.findall(html) == []
    assert "<link" not in html
    assert "fetch(" not in html
    assert "XMLHttpRequest" not in html
    assert len(html.encode()) < 40_000  # hand-written and small; no framework bundle


def test_embedded_data_cannot_close_the_script_it_is_in() -> None:
    hostile = {"run_id": "r", "results": [], "status": "failed", "note": "</script><script>alert(1)</script> & <!--"}
    page = page_for(hostile)
    data = page.split('id="run-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data) == hostile
    assert page.count("<script") == view_html().count("<script")


def test_every_file_the_view_needs_is_package_data_so_a_plain_install_ships_it() -> None:
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["subagent_mcp"]
    package = root / "server" / "subagent_mcp"
    static = sorted(p.relative_to(package) for p in (package / "static").iterdir())
    assert static
    assert [p for p in static if not any(p.match(g) for g in globs)] == []


def test_a_handle_of_a_huge_plan_keeps_its_tasks_within_what_hosts_accept() -> None:
    tasks = [
        TaskProgress(task_id=f"task-{i:03d}", role="researcher", depends_on=[f"task-{i - 1:03d}"] if i else [],
                     status="succeeded", started_at_s=1.5, finished_at_s=2.5, usage=Usage(input_tokens=900))
        for i in range(500)
    ]  # fmt: skip
    handle = RunHandle(run_id="run-x", status="running", next="wait_run(run_id='run-x')", tasks=tasks)
    fitted, _ = fit_for_host(handle)
    assert estimate_tokens(fitted.model_dump_json()) <= MAX_RESULT_TOKENS
    assert 0 < len(fitted.tasks) < 500
    assert fitted.tasks == tasks[: len(fitted.tasks)]
    assert fitted.tasks_omitted == 500 - len(fitted.tasks)
    small = handle.model_copy(update={"tasks": tasks[:5]})
    assert fit_for_host(small) == (small, 0)


def test_a_page_written_to_a_file_runs_only_its_own_script_and_style_and_fetches_nothing() -> None:
    """Opened from a file the page has no host CSP: its own allows its inline script and style by hash, nothing else."""
    page = page_for({"run_id": "r", "results": [], "status": "succeeded"})
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert policy is not None
    assert page.index(policy.group(0)) < page.index("<style>")
    rules = {rule.split()[0]: rule.split()[1:] for rule in policy.group(1).split(";") if rule.strip()}
    assert rules["default-src"] == ["'none'"]

    def sha256_of(body: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"

    assert rules["script-src"] == [sha256_of(b) for b in re.findall(r"<script>(.*?)</script>", page, re.S)]
    assert rules["style-src"] == [sha256_of(b) for b in re.findall(r"<style>(.*?)</style>", page, re.S)]
    assert "unsafe-inline" not in policy.group(1)


def test_the_view_served_to_hosts_carries_no_csp_of_its_own() -> None:
    """In an MCP Apps host the CSP is the host's (it injects the view's scripts its own way)."""
    assert "Content-Security-Policy" not in view_html()
