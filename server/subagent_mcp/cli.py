"""The ``subagent-mcp`` command: ``serve`` (the default, stdio) and ``run "task"`` (a whole task in a shell).

In stdio mode stdout belongs to the protocol, so everything this module says goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ConfigError
from .logs import configure_logging
from .settings import Settings

log = logging.getLogger("subagent_mcp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subagent-mcp",
        description="An MCP server that gives a host (Claude Desktop, Claude Code, ...) a team of Claude subagents.",
        epilog="Settings come from the environment or a .env file: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL and "
        "SUBAGENT_MCP_* (see README).",
    )
    parser.add_argument("--version", action="version", version=f"subagent-mcp {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--demo", action="store_true", default=argparse.SUPPRESS, help="use the offline scripted backend; no key needed"
    )
    parser.add_argument("--demo", action="store_true", help="use the offline scripted backend; no key needed")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", parents=[common], help="serve MCP over stdio (the default when no command is given)")
    run = commands.add_parser(
        "run", parents=[common], help="run a whole task from the terminal: plan, execute, synthesize"
    )
    run.add_argument("task", help="the task, in quotes")
    run.add_argument("--json", action="store_true", help="print the full result as JSON instead of the answer")
    run.add_argument("--max-subtasks", type=int, default=None, help="at most this many subtasks")
    run.add_argument("--max-concurrency", type=int, default=None, help="subagents in flight at once")
    parser.set_defaults(command="serve")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(demo=True) if args.demo else Settings.from_env()
    except ConfigError as exc:
        print(f"subagent-mcp: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if args.command == "serve":
        from .mcp_server import create_server

        if settings.anthropic_api_key is None and not settings.demo:
            log.warning("ANTHROPIC_API_KEY is not set: tools that call a model will say so until it is")
        create_server(settings).run()
        return 0
    import anyio

    from .cli_run import run_command

    return anyio.run(
        lambda: run_command(
            settings,
            args.task,
            as_json=args.json,
            max_subtasks=args.max_subtasks,
            max_concurrency=args.max_concurrency,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
