"""Roles from Claude Code agent files: Markdown with YAML front matter, read from ``SUBAGENT_MCP_AGENT_DIRS``.

``name``, ``description``, ``model`` and ``tools`` mean what they mean to Claude Code, and the body is the
system prompt; ``output_schema`` / ``output_schema_file`` and ``max_uses`` are ours. A file that cannot be
used is reported with its problem and skipped, so one bad file never stops the server.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .contracts import SLUG_PATTERN, JsonObject
from .errors import InputError
from .role_catalog import AgentDir, RoleCatalog, SkippedFile, role_info, tool_info
from .roles import BUILTIN_ROLES, SUMMARY, Role
from .schemas import check_output_schema
from .settings import Settings

log = logging.getLogger(__name__)

MAX_AGENT_FILE_BYTES = 256 * 1024
"""Largest agent (or schema) file read; real ones are a few KiB."""
MAX_EXPANDED_CHARS = 1024 * 1024
"""Most JSON a file's front matter may expand to: YAML aliases can make a small file huge to walk."""
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


class AgentFileError(Exception):
    """Why one agent file cannot be used; the message is shown with the file's path."""


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
    """Read every agent folder; earlier folders win, a file role replaces a built-in of its name and says so."""
    files: dict[str, Role] = {}
    skipped: list[SkippedFile] = []
    dirs: list[AgentDir] = []
    for folder in agent_dirs(settings):
        dirs.append(AgentDir(path=str(folder), found=folder.is_dir()))
        for role, problem, path in _read_folder(folder, settings):
            if role is None:
                skipped.append(SkippedFile(path=str(path), problem=problem))
            elif role.name in files:
                first = files[role.name].source
                why = f"role {role.name!r} is already defined by {first}, whose folder comes first (it wins)"
                skipped.append(SkippedFile(path=str(path), problem=why))
            else:
                files[role.name] = role
    notes = {name: [f"overrides the built-in role {name!r}"] for name in files if name in builtins}
    for name, role in files.items():
        notes.setdefault(name, []).extend(_file_notes(role))
    roles = {**builtins, **files}
    for s in skipped:
        log.warning("agent file skipped: %s: %s", s.path, s.problem)
    for name in files.keys() & builtins.keys():
        log.warning("agent file %s overrides the built-in role %r", files[name].source, name)
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


def _read_folder(folder: Path, settings: Settings) -> list[tuple[Role | None, str, Path]]:
    """Each ``*.md`` file of ``folder`` in name order: its role, or None and the problem; a later duplicate loses."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        return [(None, "is not a folder (SUBAGENT_MCP_AGENT_DIRS lists folders of agent files)", folder)]
    try:
        paths = sorted(p for p in folder.iterdir() if p.name.endswith(".md"))
    except OSError as exc:
        return [(None, f"cannot be listed: {exc.strerror or exc}", folder)]
    out: list[tuple[Role | None, str, Path]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            role = parse_agent_file(path, settings)
        except AgentFileError as exc:
            out.append((None, str(exc), path))
            continue
        if role.name in seen:
            out.append((None, f"name {role.name!r} is already used by {seen[role.name].name} in this folder", path))
            continue
        seen[role.name] = path
        out.append((role, "", path))
    return out


def parse_agent_file(path: Path, settings: Settings) -> Role:
    """The role ``path`` defines, its model aliases resolved against ``settings``.

    Raises:
        AgentFileError: the file cannot be used; the message says why, without the path.
    """
    meta, body = split_front_matter(_read_text(path))
    unused = sorted(set(meta) - OURS)
    if unused:  # Claude Code keys we have no use for (color, permissionMode, ...) do not make a file unusable
        log.debug("%s: keys not used here: %s", path, ", ".join(unused))
    name = _name(meta.get("name"))
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        raise AgentFileError("no description (the planner picks roles by it)")
    if not body.strip():
        raise AgentFileError("no system prompt: the Markdown body after the front matter is empty")
    tools = _tools(meta.get("tools"))
    return Role(
        name=name,
        description=description.strip(),
        system_prompt=body.strip(),
        model=_model(meta.get("model"), settings),
        output_schema=_schema(meta, path),
        source=str(path),
        tools=tools,
        max_uses=_max_uses(meta.get("max_uses"), tools),
    )


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The front matter as plain JSON values (``yaml.safe_load``, bounded) and the Markdown body."""
    lines = text.removeprefix("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise AgentFileError("does not start with YAML front matter (a '---' line, then name: and description:)")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise AgentFileError("its front matter is not closed by a '---' line")
    front = "\n".join(lines[1:end])
    try:
        meta = _yaml(front, "front matter", first_line=2)
    except _ColonInValue:
        meta = _key_lines(lines[1:end])  # Claude Code's own files: `description: ... user: "..."` on one line
        if meta is None:
            raise
    if not isinstance(meta, dict):
        raise AgentFileError("its front matter must be a mapping (name: ..., description: ...)")
    return meta, "\n".join(lines[end + 1 :])


_COLON_IN_VALUE = "mapping values are not allowed here"


class _ColonInValue(AgentFileError):
    """YAML refused a ``key: value`` line because its value holds ``: `` too (Claude Code writes such lines)."""


_KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*):(?:\s+(.*))?$")


def _key_lines(lines: list[str]) -> dict[str, Any] | None:
    """Front matter read as Claude Code reads it when it is not valid YAML: one ``key: value`` a line.

    Claude Code writes descriptions with ``user: "..."`` examples inside a plain scalar, which YAML
    refuses; a value runs to the end of its line (indented lines continue it). None if a line fits neither.
    """
    meta: dict[str, Any] = {}
    key: str | None = None
    for line in lines:
        found = _KEY_LINE.match(line)
        if found:
            key = str(found.group(1))
            meta[key] = _unquote((found.group(2) or "").strip())
        elif line[:1] in (" ", "\t") and key is not None:
            meta[key] = f"{meta[key]} {line.strip()}".strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            return None
    return meta or None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _read_text(path: Path) -> str:
    """A regular file's UTF-8 text, at most ``MAX_AGENT_FILE_BYTES`` (FIFOs and devices are never opened)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise AgentFileError("is not a regular file")
        if info.st_size > MAX_AGENT_FILE_BYTES:
            raise AgentFileError(f"is {info.st_size:,} bytes; the most read is {MAX_AGENT_FILE_BYTES:,} (256 KiB)")
        with path.open("rb") as f:
            data = f.read(MAX_AGENT_FILE_BYTES + 1)
    except OSError as exc:
        raise AgentFileError(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_AGENT_FILE_BYTES:
        raise AgentFileError(f"is larger than {MAX_AGENT_FILE_BYTES:,} bytes (256 KiB), the most read")
    if (nul := data.find(b"\x00")) >= 0:  # UTF-16 or binary; a prompt or description holding one is never meant
        raise AgentFileError(f"holds a NUL character (U+0000) at byte {nul}; save it as UTF-8 text without one")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AgentFileError(f"is not UTF-8 text (byte {exc.start})") from None


def _yaml(text: str, what: str, first_line: int = 1) -> Any:
    """``yaml.safe_load(text)`` as plain JSON values, refusing what expands past ``MAX_EXPANDED_CHARS``."""
    try:
        value = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + first_line}" if mark is not None else ""
        error = _ColonInValue if exc.problem == _COLON_IN_VALUE else AgentFileError
        raise error(f"its {what} is not valid YAML{where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise AgentFileError(f"its {what} is not valid YAML: {exc}") from None
    except RecursionError:
        raise AgentFileError(f"its {what} nests too deeply") from None
    return _plain(value, what)


def _plain(value: Any, what: str) -> Any:
    """``value`` copied through JSON, lazily, so aliases that expand without end are refused, not walked."""
    chunks: list[str] = []
    size = 0
    try:  # iterencode without _one_shot is the pure-Python generator: it stops when we stop pulling
        for chunk in json.JSONEncoder(default=str, allow_nan=False).iterencode(value):
            size += len(chunk)
            if size > MAX_EXPANDED_CHARS:
                raise AgentFileError(f"its {what} expands to more than 1 MiB (YAML aliases repeated inside aliases?)")
            chunks.append(chunk)
    except RecursionError:
        raise AgentFileError(f"its {what} nests too deeply") from None
    except (ValueError, TypeError) as exc:  # a self-referencing alias, NaN, a key that is not text
        raise AgentFileError(f"its {what} has something JSON cannot hold: {exc}") from None
    plain = json.loads("".join(chunks))
    if _holds_nul(plain):  # written as a YAML escape ("\\0"): no name, model or description should hold one
        raise AgentFileError(f"its {what} holds a NUL character (U+0000); remove it")
    return plain


def _holds_nul(value: Any) -> bool:
    """True if a string or key anywhere in ``value`` (plain JSON values) holds U+0000; iterative, as nesting is deep."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str) and "\x00" in item:
            return True
        if isinstance(item, dict):
            todo.extend(item)  # pyright: ignore[reportUnknownArgumentType]
            todo.extend(item.values())  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]
        elif isinstance(item, list):
            todo.extend(item)  # pyright: ignore[reportUnknownArgumentType]
    return False


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


def _tools(value: object) -> tuple[str, ...]:
    """Claude Code's ``tools``: a comma-separated string or a list of names; every name kept as written."""
    if value is None:
        return ()
    items: list[Any] = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    if not all(isinstance(t, str) for t in items):
        raise AgentFileError("tools must be a list of tool names or a comma-separated string of them")
    return tuple(t.strip() for t in items if t.strip())


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
        inline = _yaml(_read_text(_schema_path(ref, path)), "output_schema_file")
    elif isinstance(inline, str):  # a JSON or YAML mapping written as a string
        inline = _yaml(inline, "output_schema")
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
