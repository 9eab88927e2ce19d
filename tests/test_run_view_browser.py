"""The run view in a real browser: Debian's headless Chromium, driven by Playwright, under a small MCP Apps host.

The host page loads the view in a sandboxed iframe under the host's default CSP, answers ``ui/initialize``,
hands it a real tool result from the server, and proxies its ``tools/call`` to the real server (an
in-memory MCP client). What the view draws is read back from its DOM. Tests never download a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult
from playwright.async_api import ConsoleMessage, Frame, Page, Request, async_playwright, expect

from subagent_mcp.backends.scripted import ScriptedBackend, sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject, RunReport
from subagent_mcp.errors import ModelRequestError
from subagent_mcp.handles import RunHandle
from subagent_mcp.mcp_server import create_server
from subagent_mcp.run_view import page_for, view_html
from subagent_mcp.settings import Settings

pytestmark = pytest.mark.anyio

HOST_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; media-src data:; "
    "connect-src 'none'; frame-src 'none'; object-src 'none'; base-uri 'none'"
)
"""What an MCP Apps host enforces on a view that declares no domains (the spec's restrictive default)."""

HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:0">
<iframe id="view" sandbox="allow-scripts" style="display:block;width:100%;height:100px;border:0"></iframe>
<script>
const frame = document.getElementById("view");
window.seen = []; window.calls = [];
let ready = false, pending = null;
const post = (msg) => frame.contentWindow.postMessage(Object.assign({jsonrpc: "2.0"}, msg), "*");
function flush() {
  if (!ready || !pending) return;
  post({method: "ui/notifications/tool-input", params: {arguments: pending[0]}});
  post({method: "ui/notifications/tool-result", params: pending[1]});
  pending = null;
}
window.deliver = (args, result) => { pending = [args, result]; flush(); };
window.addEventListener("message", async (event) => {
  if (event.source !== frame.contentWindow) return;
  const msg = event.data; window.seen.push(msg);
  if (msg.method === "ui/initialize") {
    post({id: msg.id, result: {protocolVersion: "2026-01-26", hostInfo: {name: "test-host", version: "1"},
      hostCapabilities: {serverTools: {}}, hostContext: {theme: "light", displayMode: "inline"}}});
  } else if (msg.method === "ui/notifications/initialized") { ready = true; flush(); }
  else if (msg.method === "ui/notifications/size-changed") { frame.style.height = msg.params.height + "px"; }
  else if (msg.method === "tools/call") {
    window.calls.push(msg.params);
    try { post({id: msg.id, result: await window.callTool(msg.params)}); }
    catch (err) { post({id: msg.id, error: {code: -32603, message: String(err)}}); }
  } else if (msg.id !== undefined) { post({id: msg.id, error: {code: -32601, message: "not in this host"}}); }
});
frame.srcdoc = VIEW;
</script></body></html>"""


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium, which .ci/run installs; else skip saying why (tests never download a browser)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run does it)")
    return path


def host_page(view: str) -> str:
    """The host page with ``view`` (under the host's CSP) as its iframe's document."""
    guarded = view.replace("<head>", f'<head>\n<meta http-equiv="Content-Security-Policy" content="{HOST_CSP}">', 1)
    return HOST_PAGE.replace("VIEW;", json.dumps(guarded).replace("</", "<\\/") + ";", 1)


class Browser:
    """One Chromium page and what it saw: console errors, page errors and network requests (there must be none)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(message.text)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    async def view_frame(self) -> Frame:
        handle = await self.page.wait_for_selector("#view")
        assert handle is not None
        frame = await handle.content_frame()
        assert frame is not None
        return frame


@asynccontextmanager
async def browser(chromium: str, width: int = 1000) -> AsyncGenerator[Browser]:
    async with async_playwright() as p:
        chrome = await p.chromium.launch(executable_path=chromium)
        try:
            page = await chrome.new_page(viewport={"width": width, "height": 900})
            yield Browser(page)
        finally:
            await chrome.close()


def server(backend: ScriptedBackend) -> Any:
    return create_server(Settings.from_env({}, env_file=None), backend)


def task_id_of(request: CompletionRequest) -> str:
    return request.label


def subtask(task_id: str, *deps: str, role: str = "writer") -> JsonObject:
    return {"id": task_id, "role": role, "instructions": f"do {task_id}", "depends_on": list(deps)}


def wire(result: CallToolResult) -> JsonObject:
    """A tool result as it travels in JSON-RPC (what a host hands the view)."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def show_in_host(b: Browser, client: Client, args: JsonObject, result: CallToolResult) -> Frame:
    """Load the view under the host page, proxy its tool calls to ``client``, hand it ``result``; its frame."""

    async def call_tool(params: JsonObject) -> JsonObject:
        return wire(await client.call_tool(params["name"], params.get("arguments") or {}))

    await b.page.expose_function("callTool", call_tool)
    await b.page.set_content(host_page(view_html()))
    await b.page.evaluate("([args, result]) => window.deliver(args, result)", [args, wire(result)])
    return await b.view_frame()


FAILURE = "Anthropic API rejected the request (400 invalid_request_error): nope"


async def test_the_view_draws_every_subtask_the_failure_and_why_its_dependents_were_skipped(chromium: str) -> None:
    def reply(request: CompletionRequest) -> JsonObject:
        if task_id_of(request) == "fetch":
            raise ModelRequestError(FAILURE)
        return sample_for_schema(request.output_schema)

    plan = {"plan_id": "p-view", "task": "Write a short report", "subtasks": [
        subtask("fetch", role="researcher"), subtask("use", "fetch"), subtask("other", role="analyst"),
        subtask("final", "use", "other"),
    ]}  # fmt: skip
    async with Client(server(ScriptedBackend(reply))) as client, browser(chromium, width=400) as b:
        result = await client.call_tool("execute_plan", {"plan": plan})
        report = RunReport.model_validate(result.structured_content)
        assert report.status == "partial"
        view = await show_in_host(b, client, {"plan": plan}, result)

        await expect(view.locator("#status")).to_have_text("partial")
        statuses = {"fetch": "failed", "use": "skipped", "other": "succeeded", "final": "skipped"}
        for task_id, status in statuses.items():
            node = view.locator(f'#graph-box [data-task="{task_id}"]')
            await expect(node).to_have_attribute("data-status", status)
            await expect(node).to_contain_text(task_id)
            await expect(view.locator(f'#gantt .lbl[data-task="{task_id}"]')).to_have_text(task_id)
        await expect(view.locator("#graph-box path.edge")).to_have_count(3)  # fetch→use, use→final, other→final
        why = view.locator("#why")
        await expect(why.locator('[data-task="fetch"]')).to_have_text(f"fetch failed: {FAILURE}")
        await expect(why.locator('[data-task="use"]')).to_have_text("use skipped: depends on 'fetch', which failed")
        await expect(why.locator('[data-task="final"]')).to_have_text("final skipped: depends on 'fetch', which failed")
        await expect(view.locator("#totals")).to_contain_text("4 subtasks: 1 succeeded, 1 failed, 2 skipped")

        sizes = [
            m["params"] for m in await b.page.evaluate("window.seen") if m.get("method", "").endswith("size-changed")
        ]
        assert sizes
        assert sizes[-1]["height"] > 300
        overflow = await view.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0  # at 400 px only the graph scrolls sideways, inside its own box
    assert b.problems == []
    assert b.requests == []  # no script, style, font or fetch left the page


async def test_a_running_run_is_followed_through_wait_run_and_redrawn_when_it_ends(chromium: str) -> None:
    gate = anyio.Event()

    async def reply(request: CompletionRequest) -> JsonObject:
        if task_id_of(request) == "slow":
            await gate.wait()
        return sample_for_schema(request.output_schema)

    plan = {"plan_id": "p-live", "task": "Write a short report",
            "subtasks": [subtask("quick"), subtask("slow"), subtask("after", "quick", "slow")]}  # fmt: skip
    async with Client(server(ScriptedBackend(reply))) as client, browser(chromium) as b:
        started = await client.call_tool("execute_plan", {"plan": plan, "wait_s": 0})
        handle = RunHandle.model_validate(started.structured_content)
        assert handle.status == "running"
        view = await show_in_host(b, client, {"plan": plan, "wait_s": 0}, started)

        await b.page.wait_for_function("window.calls.length > 0")  # the view asked the host to call wait_run
        calls = await b.page.evaluate("window.calls")
        assert calls[0] == {"name": "wait_run", "arguments": {"run_id": handle.run_id, "wait_s": 10}}
        await expect(view.locator("#graph-box [data-task]")).to_have_count(3)  # the plan, from the handle alone
        await expect(view.locator("#note")).to_contain_text("Live")

        gate.set()
        await expect(view.locator("#status")).to_have_text("succeeded")
        for task_id in ("quick", "slow", "after"):
            await expect(view.locator(f'#graph-box [data-task="{task_id}"]')).to_have_attribute(
                "data-status", "succeeded"
            )
        await expect(view.locator("#totals")).to_contain_text("3 subtasks: 3 succeeded")
        await expect(view.locator("#note")).to_be_hidden()
        report = RunReport.model_validate(
            (await client.call_tool("wait_run", {"run_id": handle.run_id})).structured_content
        )
        await expect(view.locator("#title")).to_have_text(f"Run {report.run_id}")
    assert b.problems == []
    assert b.requests == []


SCRIPT = Path(sys.executable).with_name("subagent-mcp")


@pytest.mark.subprocess
async def test_show_html_writes_a_page_the_browser_draws_offline(tmp_path: Path, chromium: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    env["SUBAGENT_MCP_DB_PATH"] = str(tmp_path / "runs.db")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env, check=False)

    run = cli("run", "--demo", "--json", "Compare two databases")
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout)
    page_file = tmp_path / "run.html"
    shown = cli("show", outcome["report"]["run_id"], "--html", str(page_file))
    assert shown.returncode == 0, shown.stderr
    async with browser(chromium) as b:
        await b.page.goto(page_file.as_uri())
        await expect(b.page.locator("#status")).to_have_text("succeeded")
        for s in outcome["plan"]["subtasks"]:
            await expect(b.page.locator(f'#graph-box [data-task="{s["id"]}"]')).to_have_attribute(
                "data-status", "succeeded"
            )
        await expect(b.page.locator("#answer .answer")).to_have_text(outcome["synthesis"]["answer"])
        read = outcome["synthesis"]["read_by_summary"]
        assert read  # the demo's research and analysis went into its write-up
        await expect(b.page.locator("#answer .read-by-summary")).to_contain_text(", ".join(read))
        await expect(b.page.locator("#task")).to_have_text("Task: Compare two databases")
    assert b.problems == []  # a script or style its CSP refused would be a console error
    assert b.requests == [page_file.as_uri()]
    assert 'http-equiv="Content-Security-Policy"' in page_file.read_text(encoding="utf-8")


async def test_a_script_slipped_into_a_written_page_is_refused_by_its_csp(tmp_path: Path, chromium: str) -> None:
    page = page_for({"run_id": "r", "plan_id": "p", "results": [], "status": "succeeded"})
    page_file = tmp_path / "run.html"
    page_file.write_text(page.replace("</body>", "<script>document.title = 'injected';</script></body>"), "utf-8")
    async with browser(chromium) as b:
        await b.page.goto(page_file.as_uri())
        await expect(b.page.locator("#status")).to_have_text("succeeded")
        assert await b.page.title() == "subagent-mcp run"
    assert any("Content Security Policy" in problem for problem in b.problems), b.problems
