"""Roles from Claude Code agent files: Markdown with YAML front matter, read from ``SUBAGENT_MCP_AGENT_DIRS``.

``name``, ``description``, ``model`` and ``tools`` mean what they mean to Claude Code, and the body is the
system prompt; ``output_schema`` / ``output_schema_file`` and ``max_uses`` are ours. A file that cannot be
used is reported with its problem and skipped, so one bad file never stops the server.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contracts import SLUG_PATTERN, JsonObject
from .errors import InputError
from .front_matter import AgentFileError, load_yaml, read_text, split_front_matter
from .role_catalog import AgentDir, RoleCatalog, SkippedFile, role_info, tool_info
from .roles import BUILTIN_ROLES, SUMMARY, Role
from .schemas import check_output_schema
from .settings import Settings

log = logging.getLogger(__name__)

MAX_FILE_ROLES = 100
"""Most roles read from agent files, in folder then name order: the planner reads every role on every call."""
MAX_ROLE_TOOLS = 50
"""Most tools one role keeps, as written; real files list a handful, and each is listed to hosts and the planner."""
MAX_TOOL_NAME_CHARS = 128
"""Longest tool name kept; tool names are identifiers (Claude Code's ``mcp__server__tool`` ones included)."""
LARGE_ROLE_LIST = 40
"""More roles than this are warned about at start: each one lengthens every planner call's prompt."""
MODEL_ID = re.compile(r"^claude-[a-z0-9][a-z0-9._-]{0,98}$")
OURS = frozenset({"name", "description", "model", "tools", "output_schema", "output_schema_file", "max_uses"})

FILE_ROLE_SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "summary": SUMMARY,
        "result": {"type": "string", "description": "Your full output, in Markdown."},
    },
    "required": ["summary", "result"],
    "additionalProperties": False,
}
"""What a file role returns when its file sets no output schema."""


@dataclass
class LoadedRoles:
    """The roles a server offers (built-ins, then files over them) and what the catalog says of them."""

    roles: dict[str, Role]
    catalog: RoleCatalog


def default_agent_dirs(cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    """Claude Code's places: the project's ``.claude/agents`` first, then the user's."""
    return [(cwd or Path.cwd()) / ".claude" / "agents", (home or Path.home()) / ".claude" / "agents"]


def agent_dirs(settings: Settings) -> list[Path]:
    """The folders to read, in precedence order (``SUBAGENT_MCP_AGENT_DIRS``, else the defaults)."""
    if settings.agent_dirs is None:
        return default_agent_dirs()
    return [Path(entry).expanduser() for entry in settings.agent_dirs]


def load_roles(settings: Settings, builtins: dict[str, Role] = BUILTIN_ROLES) -> LoadedRoles:
    """Read every agent folder; earlier folders win, a file role replaces a built-in of its name and says so.

    At most ``MAX_FILE_ROLES`` roles are read from files; the files after that are skipped unread.
    """
    files: dict[str, Role] = {}
    notes: dict[str, list[str]] = {}
    skipped: list[SkippedFile] = []
    dirs: list[AgentDir] = []
    for folder in agent_dirs(settings):
        dirs.append(AgentDir(path=str(folder), found=folder.is_dir()))
        paths = _agent_files(folder)
        if isinstance(paths, str):
            skipped.append(SkippedFile(path=str(folder), problem=paths))
            continue
        seen: dict[str, Path] = {}
        for i, path in enumerate(paths):
            if len(files) >= MAX_FILE_ROLES:
                skipped.append(SkippedFile(path=str(folder), problem=_not_read(paths[i:])))
                break
            try:
                role, role_notes = _parse(path, settings)
            except AgentFileError as exc:
                skipped.append(SkippedFile(path=str(path), problem=str(exc)))
                continue
            if role.name in seen:
                why = f"name {role.name!r} is already used by {seen[role.name].name} in this folder"
                skipped.append(SkippedFile(path=str(path), problem=why))
                continue
            seen[role.name] = path
            if role.name in files:
                first = files[role.name].source
                why = f"role {role.name!r} is already defined by {first}, whose folder comes first (it wins)"
                skipped.append(SkippedFile(path=str(path), problem=why))
            else:
                files[role.name], notes[role.name] = role, role_notes
    for name, role in files.items():
        for note in notes[name]:
            log.warning("agent file %s: %s", role.source, note)
        if name in builtins:
            notes[name].insert(0, f"overrides the built-in role {name!r}")
            log.warning("agent file %s overrides the built-in role %r", role.source, name)
        notes[name].extend(_file_notes(role))
    roles = {**builtins, **files}
    for s in skipped:
        log.warning("agent file skipped: %s: %s", s.path, s.problem)
    if len(roles) > LARGE_ROLE_LIST:
        log.warning(
            "%d roles are offered (%d from agent files): the planner's prompt lists each one on every plan_task "
            "call, so planning is slower and costs more; SUBAGENT_MCP_AGENT_DIRS chooses the folders read",
            len(roles),
            len(files),
        )
    catalog = RoleCatalog(
        roles=[role_info(role, settings, notes.get(name, ())) for name, role in roles.items()],
        skipped=skipped,
        agent_dirs=dirs,
    )
    return LoadedRoles(roles=roles, catalog=catalog)


def _file_notes(role: Role) -> list[str]:
    if role.tools:
        return []
    return ["lists no tools (Claude Code would give it every tool of the main thread; here it has none)"]


def _agent_files(folder: Path) -> list[Path] | str:
    """The ``*.md`` files of ``folder`` in name order (none if it does not exist), or why it cannot be read."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        return "is not a folder (SUBAGENT_MCP_AGENT_DIRS lists folders of agent files)"
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(".md"))
    except OSError as exc:
        return f"cannot be listed: {exc.strerror or exc}"


def _not_read(paths: list[Path]) -> str:
    """Why the files ``paths`` (the rest of a folder, in name order) were skipped unread."""
    files = "agent file" if len(paths) == 1 else "agent files"
    return (
        f"{len(paths):,} {files} not read, from {paths[0].name} on: at most {MAX_FILE_ROLES} roles are read "
        "from agent files (the planner reads every role on every call); remove some, or point "
        "SUBAGENT_MCP_AGENT_DIRS at fewer folders"
    )


def parse_agent_file(path: Path, settings: Settings) -> Role:
    """The role ``path`` defines, its model aliases resolved against ``settings``.

    Raises:
        AgentFileError: the file cannot be used; the message says why, without the path.
    """
    return _parse(path, settings)[0]


def _parse(path: Path, settings: Settings) -> tuple[Role, list[str]]:
    """The role ``path`` defines and what was left out of it (tools past the caps), for the catalog."""
    meta, body = split_front_matter(read_text(_inside_folder(path)))
    unused = sorted(set(meta) - OURS)
    if unused:  # Claude Code keys we have no use for (color, permissionMode, ...) do not make a file unusable
        log.debug("%s: keys not used here: %s", path, ", ".join(unused))
    name = _name(meta.get("name"))
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        raise AgentFileError("no description (the planner picks roles by it)")
    if not body.strip():
        raise AgentFileError("no system prompt: the Markdown body after the front matter is empty")
    tools, tool_notes = _tools(meta.get("tools"))
    role = Role(
        name=name,
        description=description.strip(),
        system_prompt=body.strip(),
        model=_model(meta.get("model"), settings),
        output_schema=_schema(meta, path),
        source=str(path),
        tools=tools,
        max_uses=_max_uses(meta.get("max_uses"), tools),
    )
    return role, tool_notes


def _inside_folder(path: Path) -> Path:
    """``path`` with its links resolved, if that stays inside its folder (as ``output_schema_file`` must)."""
    try:
        folder, target = path.parent.resolve(), path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links: RuntimeError before Python 3.13
        raise AgentFileError(f"cannot be resolved: {exc}") from None
    if not target.is_relative_to(folder):
        raise AgentFileError("links to a file outside its folder; agent files must be inside it (copy it in)")
    return target


def _name(value: object) -> str:
    if value is None or value == "":
        raise AgentFileError("no name (front matter needs name: a-role-name)")
    if not isinstance(value, str) or not value.strip():
        raise AgentFileError(f"name must be text like 'code-reviewer', not {value!r}")
    name = value.strip()
    if re.fullmatch(SLUG_PATTERN, name):
        return name
    hint = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:48]
    like = f", e.g. {hint!r}" if re.fullmatch(SLUG_PATTERN, hint) else ""
    raise AgentFileError(
        f"name {name!r} is not a role name: use lowercase letters, digits, - and _ "
        f"(at most 48, starting with a letter or digit){like}"
    )


def _model(value: object, settings: Settings) -> str | None:
    """Claude Code's ``model``: an alias mapped to a configured model, ``inherit`` (the default) or an id."""
    if value is None:
        return None
    aliases = {"haiku": settings.subagent_model, "sonnet": settings.strong_subagent_model}
    aliases["opus"] = settings.planner_model
    if not isinstance(value, str):
        raise AgentFileError(f"model must be haiku, sonnet, opus, inherit or a model id, not {value!r}")
    model = value.strip()
    if model == "inherit":
        return None
    if model in aliases:
        return aliases[model]
    if MODEL_ID.fullmatch(model):
        return model
    raise AgentFileError(f"unknown model {model!r}: use haiku, sonnet, opus, inherit or an id like 'claude-sonnet-5-5'")


def _tools(value: object) -> tuple[tuple[str, ...], list[str]]:
    """Claude Code's ``tools``: a comma-separated string or a list of names, kept as written up to the caps.

    Also says what the caps left out: names over ``MAX_TOOL_NAME_CHARS``, tools past ``MAX_ROLE_TOOLS``.
    """
    if value is None:
        return (), []
    items: list[Any] = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    if not all(isinstance(t, str) for t in items):
        raise AgentFileError("tools must be a list of tool names or a comma-separated string of them")
    names = [t.strip() for t in items if t.strip()]
    kept = list(dict.fromkeys(t for t in names if len(t) <= MAX_TOOL_NAME_CHARS))
    notes: list[str] = []
    if too_long := sum(len(t) > MAX_TOOL_NAME_CHARS for t in names):
        notes.append(
            f"{too_long:,} tool name{'s' if too_long > 1 else ''} longer than {MAX_TOOL_NAME_CHARS} characters skipped"
        )
    if len(kept) > MAX_ROLE_TOOLS:
        rest = len(kept) - MAX_ROLE_TOOLS
        notes.append(f"lists {len(kept):,} tools; the first {MAX_ROLE_TOOLS} are kept, the other {rest:,} skipped")
    return tuple(kept[:MAX_ROLE_TOOLS]), notes


def _max_uses(value: object, tools: tuple[str, ...]) -> dict[str, int]:
    """``max_uses``: one number for every server tool listed, or ``{tool: number}``."""
    if value is None:
        return {}
    servers = [info.server_tool for info in map(tool_info, tools) if info.server_tool is not None]
    if not servers:
        raise AgentFileError("max_uses is given but tools lists no server tool (WebSearch, WebFetch)")
    entries: dict[str, object] = (
        dict.fromkeys(servers, value)
        if not isinstance(value, dict)
        else {str(tool_info(str(k)).server_tool or k): v for k, v in value.items()}
    )
    for tool, uses in entries.items():
        if tool not in servers:
            raise AgentFileError(f"max_uses names {tool!r}, which is not a server tool the file lists")
        if not isinstance(uses, int) or isinstance(uses, bool) or not 1 <= uses <= 1000:
            raise AgentFileError(f"max_uses for {tool} must be a whole number from 1 to 1000, not {uses!r}")
    return {tool: int(uses) for tool, uses in entries.items()}  # type: ignore[arg-type]  # checked above


def _schema(meta: dict[str, Any], path: Path) -> JsonObject:
    """The role's output schema: inline, from a file beside the agent file, or ``FILE_ROLE_SCHEMA``."""
    inline, ref = meta.get("output_schema"), meta.get("output_schema_file")
    if inline is not None and ref is not None:
        raise AgentFileError("give output_schema or output_schema_file, not both")
    if ref is not None:
        inline = load_yaml(read_text(_schema_path(ref, path)), "output_schema_file")
    elif isinstance(inline, str):  # a JSON or YAML mapping written as a string
        inline = load_yaml(inline, "output_schema")
    if inline is None:
        return FILE_ROLE_SCHEMA
    try:
        return check_output_schema(inline)
    except InputError as exc:
        raise AgentFileError(str(exc)) from None


def _schema_path(ref: object, agent_file: Path) -> Path:
    """``output_schema_file`` resolved beside the agent file; it may not leave the agent file's folder."""
    if not isinstance(ref, str) or not ref.strip():
        raise AgentFileError("output_schema_file must be a path relative to the agent file")
    folder = agent_file.parent.resolve()
    if os.path.isabs(ref):
        raise AgentFileError(f"output_schema_file {ref!r} must be relative to the agent file's folder")
    target = (folder / ref).resolve()
    if not target.is_relative_to(folder):
        raise AgentFileError(f"output_schema_file {ref!r} points outside the agent file's folder")
    if not target.exists():
        raise AgentFileError(f"output_schema_file {ref!r} does not exist (looked for {target})")
    return target
