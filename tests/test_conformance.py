"""The MCP conformance suite's generic server scenarios pass against `subagent-mcp serve --http --demo`."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / ".cache" / "conformance" / "node_modules"
NODE = MODULES / "node" / "bin" / "node"  # node@22 from npm: the suite imports fs.globSync, which Node 20 lacks
SUITE = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
INSTALL_HINT = "npm install --prefix .cache/conformance @modelcontextprotocol/conformance@0.1.16 node@22"
SCRIPT = Path(sys.executable).with_name("subagent-mcp")
SCENARIO_TIMEOUT_S = 45

# Scenarios that need nothing but what every MCP server offers over HTTP: this server must pass each one.
APPLICABLE = (
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "logging-set-level",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
)

# Scenarios that exercise fixtures only the suite's reference server has (test_* tools, prompts, test:// resources).
EXCLUDED = {
    "completion-complete": "completes an argument of the fixture prompt test_prompt_with_arguments",
    "tools-call-simple-text": "calls the fixture tool test_simple_text (the 'Unknown tool' error passes it vacuously)",
    "tools-call-image": "calls the fixture tool test_image_content",
    "tools-call-audio": "calls the fixture tool test_audio_content",
    "tools-call-embedded-resource": "calls the fixture tool test_embedded_resource",
    "tools-call-mixed-content": "calls the fixture tool test_multiple_content_types",
    "tools-call-with-logging": "calls the fixture tool test_tool_with_logging",
    "tools-call-error": "calls the fixture tool test_error_handling (the 'Unknown tool' error passes it vacuously)",
    "tools-call-with-progress": "calls the fixture tool test_tool_with_progress",
    "tools-call-sampling": "calls the fixture tool test_sampling",
    "tools-call-elicitation": "calls the fixture tool test_elicitation",
    "json-schema-2020-12": "lists the fixture tool json_schema_2020_12_tool",
    "elicitation-sep1034-defaults": "calls the fixture tool test_elicitation_sep1034_defaults",
    "elicitation-sep1330-enums": "calls the fixture tool test_elicitation_sep1330_enums",
    "server-sse-polling": "calls the fixture tool test_reconnection",
    "resources-read-text": "reads the fixture resource test://static-text",
    "resources-read-binary": "reads the fixture resource test://static-binary",
    "resources-templates-read": "reads the fixture template test://template/{id}/data",
    "resources-subscribe": "subscribes to the fixture resource test://watched-resource",
    "resources-unsubscribe": "unsubscribes from the fixture resource test://watched-resource",
    "prompts-get-simple": "gets the fixture prompt test_simple_prompt",
    "prompts-get-with-args": "gets the fixture prompt test_prompt_with_arguments",
    "prompts-get-embedded-resource": "gets the fixture prompt test_prompt_with_embedded_resource",
    "prompts-get-with-image": "gets the fixture prompt test_prompt_with_image",
}


def suite_command() -> list[str]:
    """The suite under node@22, as .ci/run installs them; else skip saying why (tests never download it)."""
    if not (NODE.exists() and SUITE.exists()):
        pytest.skip(
            f"the MCP conformance suite is not installed locally (tests never download it); run: {INSTALL_HINT}"
        )
    return [str(NODE), str(SUITE)]


@dataclass
class Outcome:
    """One scenario run: the suite's exit code, its console output and the checks it wrote to checks.json."""

    returncode: int
    output: str
    checks: list[dict[str, object]]

    def failures(self) -> list[str]:
        return [f"{c.get('id')}: {c.get('errorMessage')}" for c in self.checks if c.get("status") == "FAILURE"]


def run_scenario(scenario: str, url: str, out: Path) -> Outcome:
    """Run one server scenario against ``url``, bounded by a timeout, and read back the checks it recorded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    command = [*suite_command(), "server", "--url", url, "--scenario", scenario, "--output-dir", str(out)]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S, env=env, cwd=out, check=False
    )
    output = completed.stdout + completed.stderr
    found = sorted(out.glob(f"server-{scenario}-*/checks.json"))
    checks: list[dict[str, object]] = json.loads(found[-1].read_text()) if found else []
    return Outcome(completed.returncode, output, checks)


@dataclass
class Server:
    """A running `subagent-mcp serve --http --demo`: its URL and the stderr lines read so far."""

    url: str
    stderr: list[str]


def read_lines(stream: IO[str], lines: list[str], ready: queue.Queue[str]) -> None:
    """Keep draining ``stream`` (so the server never blocks on a full pipe), passing each line on."""
    for line in iter(stream.readline, ""):
        lines.append(line)
        ready.put(line)
    ready.put("")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One demo server over HTTP on 127.0.0.1 for the module, ready once it prints the URL it serves."""
    suite_command()
    home = tmp_path_factory.mktemp("server")
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    env = {
        **keep,
        "XDG_DATA_HOME": str(home / "data"),
        "SUBAGENT_MCP_DB_PATH": str(home / "runs.db"),
        "SUBAGENT_MCP_ALLOW_REMOTE_MODEL": "0",
    }
    command = [str(SCRIPT), "serve", "--demo", "--http", "--port", "0"]
    with subprocess.Popen(command, env=env, cwd=home, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        lines: list[str] = []
        ready: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=read_lines, args=(process.stderr, lines, ready), daemon=True)
        reader.start()
        try:
            yield Server(wait_for_url(ready, lines), lines)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            reader.join(timeout=10)


def wait_for_url(ready: queue.Queue[str], lines: list[str]) -> str:
    """The URL from the server's readiness line; fail with its stderr if it exits or stays silent first."""
    while True:
        try:
            line = ready.get(timeout=20)
        except queue.Empty:
            pytest.fail("the server printed no URL within 20 s; its stderr:\n" + "".join(lines))
        if not line:
            pytest.fail("the server exited before printing its URL; its stderr:\n" + "".join(lines))
        match = re.search(r"serving MCP over streamable HTTP at (http://127\.0\.0\.1:\d+/mcp)", line)
        if match:
            return match.group(1)


def test_every_server_scenario_of_the_installed_suite_is_either_run_or_excluded_with_a_reason() -> None:
    """A newer suite's new scenarios fail this until someone decides whether they apply here."""
    completed = subprocess.run(
        [*suite_command(), "list", "--server"], capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    listed = set(re.findall(r"^\s*- (\S+) \[", completed.stdout, flags=re.MULTILINE))
    assert listed, completed.stdout
    assert not set(APPLICABLE) & set(EXCLUDED)
    assert listed == set(APPLICABLE) | set(EXCLUDED), (
        f"classify these new scenarios in APPLICABLE or EXCLUDED: {sorted(listed - set(APPLICABLE) - set(EXCLUDED))}; "
        f"these are no longer listed: {sorted((set(APPLICABLE) | set(EXCLUDED)) - listed)}"
    )


@pytest.mark.subprocess
@pytest.mark.parametrize("scenario", APPLICABLE)
def test_a_generic_server_scenario_passes_over_http(scenario: str, server: Server, tmp_path: Path) -> None:
    outcome = run_scenario(scenario, server.url, tmp_path)
    report = f"{outcome.output}\n--- server stderr ---\n{''.join(server.stderr[-50:])}"
    assert outcome.returncode == 0, report
    assert outcome.checks, f"the suite recorded no checks\n{report}"
    assert not outcome.failures(), report
    assert any(check.get("status") == "SUCCESS" for check in outcome.checks), report


@pytest.mark.subprocess
def test_a_scenario_against_a_path_that_serves_no_mcp_is_reported_as_failed(server: Server, tmp_path: Path) -> None:
    """The harness itself can fail: a 404 endpoint must come back as a failed scenario, not a pass."""
    outcome = run_scenario("ping", server.url.removesuffix("/mcp") + "/not-mcp", tmp_path)
    assert outcome.returncode != 0, outcome.output
    assert outcome.failures(), outcome.output
