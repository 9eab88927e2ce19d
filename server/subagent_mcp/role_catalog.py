"""What ``list_roles``, ``subagent://roles`` and ``subagent-mcp roles`` show: every role and every skipped file.

Also says, for each tool a role lists, whether a subagent can use it here, so neither the host nor the
planner is told of a tool that is silently missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from .roles import Role
from .server_tools import DEFAULT_MAX_USES, server_tool_of
from .settings import Settings
from .visible import visible

PLANNER_UNUSABLE_SHOWN = 5
"""Tools a role cannot use that the planner is told by name (then a count): every plan pays for the list."""

LISTED_DESCRIPTION_CHARS = 4000
"""The most of a role's description a listing shows: an agent file's may be 256 KiB, and a catalog lists 100 roles."""

ToolStatus = Literal["available", "off (SUBAGENT_MCP_SERVER_TOOLS=off)", "not available here"]


class ToolInfo(BaseModel):
    """One tool a role lists: as written, what it maps to here, and whether a subagent can use it."""

    name: str
    server_tool: str | None = Field(
        description="The API server tool it maps to (web_search, web_fetch, code_execution), if any."
    )
    status: ToolStatus
    max_uses: int | None = None


class RoleInfo(BaseModel):
    """One role as a host or a person should see it."""

    name: str
    description: str = Field(
        description=f"As its file says; past {LISTED_DESCRIPTION_CHARS:,} characters, cut with … and a count left out."
    )
    source: str = Field(description='The agent file it was read from, or "built-in".')
    model: str = Field(description="The model its subagents call (after SUBAGENT_MCP_ROLE_MODELS and aliases).")
    tools: list[ToolInfo]
    notes: list[str] = Field(default_factory=list[str])


class SkippedFile(BaseModel):
    """An agent file that was not loaded, and why."""

    path: str
    problem: str


class AgentDir(BaseModel):
    """A folder searched for agent files, in precedence order."""

    path: str
    found: bool


class RoleCatalog(BaseModel):
    """Every role the planner and run_subagent can use, and the agent files that were skipped."""

    roles: list[RoleInfo]
    skipped: list[SkippedFile] = Field(default_factory=list[SkippedFile])
    agent_dirs: list[AgentDir] = Field(default_factory=list[AgentDir])


def tool_info(name: str, max_uses: Mapping[str, int] | None = None, *, enabled: bool = True) -> ToolInfo:
    """Classify one tool a role lists; Claude Code's local tools (Read, Bash, ...) do not exist here.

    ``enabled`` is ``Settings.server_tools``: off, a server tool is listed but not offered.
    """
    server = server_tool_of(name)
    if server is None:
        return ToolInfo(name=name, server_tool=None, status="not available here")
    if not enabled:
        return ToolInfo(name=name, server_tool=server, status="off (SUBAGENT_MCP_SERVER_TOOLS=off)")
    uses = None if server == "code_execution" else (max_uses or {}).get(server, DEFAULT_MAX_USES)
    return ToolInfo(name=name, server_tool=server, status="available", max_uses=uses)


def listed_description(description: str) -> str:
    """``description`` up to ``LISTED_DESCRIPTION_CHARS``, then a visible ``…`` and how many characters it left out."""
    if len(description) <= LISTED_DESCRIPTION_CHARS:
        return description
    left_out = len(description) - LISTED_DESCRIPTION_CHARS
    return f"{description[:LISTED_DESCRIPTION_CHARS]}… ({left_out:,} more characters not shown)"


def role_info(role: Role, settings: Settings, notes: Iterable[str] = ()) -> RoleInfo:
    """The listing of ``role``, with the model its subagents will call under ``settings``."""
    extra = list(notes)
    if role.name in settings.role_models:
        extra.append(f"model set by SUBAGENT_MCP_ROLE_MODELS ({role.name}={settings.role_models[role.name]})")
    return RoleInfo(
        name=role.name,
        description=listed_description(role.description),
        source=role.source or "built-in",
        model=settings.model_for_role(role.name, role.tier, role.model),
        tools=[tool_info(t, role.max_uses, enabled=settings.server_tools) for t in role.tools],
        notes=extra,
    )


def planner_tools_note(role: Role, *, server_tools: bool = True) -> str:
    """What the planner is told of a role's tools: those it can use, and those listed that it cannot."""
    if not role.tools:
        return ""
    infos = [tool_info(t, enabled=server_tools) for t in role.tools]
    usable = dict.fromkeys(i.server_tool or i.name for i in infos if i.status == "available")
    unusable = [i.name for i in infos if i.status != "available"]
    parts = [f"Tools: {', '.join(usable)}."] if usable else []
    if unusable:
        more = len(unusable) - PLANNER_UNUSABLE_SHOWN
        named = ", ".join(unusable[:PLANNER_UNUSABLE_SHOWN]) + (f" and {more} more" if more > 0 else "")
        parts.append(f"Tools it lists but cannot use here: {named}.")
    return " " + " ".join(parts)


def catalog_text(catalog: RoleCatalog) -> str:
    """The catalog for a terminal or a host that shows only text; one line per item, whatever a file's name holds."""
    lines: list[str] = []
    for role in catalog.roles:
        lines.append(f"- {role.name} [{role.model}] ({role.source}): {' '.join(role.description.split())}")
        for tool in role.tools:
            maps = f" → {tool.server_tool}" if tool.server_tool and tool.server_tool != tool.name else ""
            uses = f", at most {tool.max_uses} uses per call" if tool.max_uses else ""
            lines.append(f"    tool {tool.name}{maps}: {tool.status}{uses}")
        lines.extend(f"    note: {note}" for note in role.notes)
    found = [d.path for d in catalog.agent_dirs if d.found]
    searched = ", ".join(f"{d.path}{'' if d.found else ' (absent)'}" for d in catalog.agent_dirs) or "none"
    head = f"{len(catalog.roles)} roles; agent folders searched, first wins: {searched}"
    if not found and catalog.agent_dirs:
        head += " (no agent folder exists)"
    lines.insert(0, head)
    if catalog.skipped:
        lines.append(f"Skipped {len(catalog.skipped)} agent file(s):")
        lines.extend(f"- {s.path}: {s.problem}" for s in catalog.skipped)
    return "\n".join(visible(line, one_line=True) for line in lines)


def with_home_as_tilde(catalog: RoleCatalog, home: Path) -> RoleCatalog:
    """``catalog`` with the home folder written ``~`` in its paths, notes and problems: for clients elsewhere."""
    if len(home.parts) < 2:  # a home of "/" names no one
        return catalog
    at_home = re.compile(re.escape(str(home)) + r"(?![\w.-])")

    def tilde(text: str) -> str:
        return at_home.sub("~", text)

    return RoleCatalog(
        roles=[
            r.model_copy(update={"source": tilde(r.source), "notes": list(map(tilde, r.notes))}) for r in catalog.roles
        ],
        skipped=[SkippedFile(path=tilde(s.path), problem=tilde(s.problem)) for s in catalog.skipped],
        agent_dirs=[AgentDir(path=tilde(d.path), found=d.found) for d in catalog.agent_dirs],
    )
