"""The ``subagent-mcp`` command: ``serve`` (stdio, or ``--http``), ``run``, ``runs``, ``show``, ``roles``, ``worker``.

In stdio mode stdout belongs to the protocol, so everything this module says goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .arguments import string_problem
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
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve MCP over stdio (the default when no command is given), or HTTP with --http",
    )
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP at http://HOST:PORT/mcp, not stdio")
    serve.add_argument("--host", default=None, help="with --http: address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="with --http: port (default 8765; 0 picks a free one)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="with --http: allow a non-loopback host (needs SUBAGENT_MCP_HTTP_TOKEN)",
    )
    run = commands.add_parser(
        "run", parents=[common], help="run a whole task from the terminal: plan, execute, synthesize"
    )
    run.add_argument("task", nargs="*", help="the task, best in quotes (unquoted words are joined with spaces)")
    run.add_argument("--resume", metavar="RUN_ID", help="continue a stored run instead of starting one")
    run.add_argument("--json", action="store_true", help="print the full result as JSON instead of the answer")
    run.add_argument("--max-subtasks", type=int, default=None, help="at most this many subtasks")
    run.add_argument("--max-concurrency", type=int, default=None, help="subagents in flight at once")
    run.add_argument(
        "--batch",
        action="store_true",
        help="send the subtasks as Message Batches: half price, but a batch can take minutes to hours",
    )
    runs = commands.add_parser("runs", help="list recent runs, newest first")
    runs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    runs.add_argument("--json", action="store_true", help="print JSON")
    show = commands.add_parser("show", help="print one stored run: status, every task's result, usage and cost")
    show.add_argument("run_id", help="a run id from 'subagent-mcp runs'")
    show.add_argument("--json", action="store_true", help="print the stored run as JSON")
    show.add_argument(
        "--html", metavar="FILE", help="write the run as one HTML page (graph, timeline, answer) that opens offline"
    )
    commands.add_parser(
        "worker",
        parents=[common],
        help="run a Temporal worker (SUBAGENT_MCP_EXECUTOR=temporal): the runs' scheduling and their model calls",
    )
    roles = commands.add_parser("roles", help="list the roles (built-in and from agent files) and skipped files")
    roles.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(command="serve", http=False, host=None, port=None, allow_remote=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(demo=True) if args.demo else Settings.from_env()
    except ConfigError as exc:
        print(f"subagent-mcp: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if args.command == "roles":
        from .cli_run import roles_command

        return roles_command(settings, as_json=args.json)
    if args.command == "worker":
        return worker_main(settings)
    if args.command == "serve":
        from .mcp_server import create_server

        problem = database_problem(settings)
        if problem:  # say so now, in one line, rather than crash in the lifespan under the host
            print(f"subagent-mcp: {problem}", file=sys.stderr)
            return 2

        from .otel_export import otlp_export

        if args.http:
            from .http_app import run_http_command

            with otlp_export():  # traces and metrics leave over OTLP if OTEL_EXPORTER_OTLP_ENDPOINT says where
                return run_http_command(settings, args.host, args.port, allow_remote=args.allow_remote)
        if args.host is not None or args.port is not None or args.allow_remote:
            print("subagent-mcp: --host, --port and --allow-remote only apply with --http", file=sys.stderr)
            return 2
        if settings.demo:
            from .demo import DEMO_NOTE

            log.warning(DEMO_NOTE)
        elif settings.anthropic_api_key is None:
            log.warning("ANTHROPIC_API_KEY is not set: tools that call a model will say so until it is")
        import anyio

        from .stdio import serve_stdio

        with otlp_export():
            return anyio.run(serve_stdio, create_server(settings))
    import anyio

    from . import cli_run

    problem = args_problem(args)
    if problem:  # one line now, not a traceback where the text is first encoded (and maybe after paid planner calls)
        print(f"subagent-mcp: {problem}", file=sys.stderr)
        return 2
    if args.command == "runs":
        return anyio.run(lambda: cli_run.runs_command(settings, args.limit, as_json=args.json))
    if args.command == "show":
        if args.html is not None:
            return anyio.run(lambda: cli_run.show_html_command(settings, args.run_id, args.html))
        return anyio.run(lambda: cli_run.show_command(settings, args.run_id, as_json=args.json))
    task = " ".join(args.task) if args.command == "run" and args.task else None
    if task is None and args.resume is None:
        example = 'subagent-mcp run "Compare SQLite and Postgres for a desktop app"'
        print(f"subagent-mcp: run needs a task, e.g. {example} (or --resume RUN_ID)", file=sys.stderr)
        return 2
    if task is not None and args.resume is not None:
        print("subagent-mcp: give a task or --resume RUN_ID, not both", file=sys.stderr)
        return 2
    if args.batch and args.resume is not None:
        print("subagent-mcp: --resume continues a run as it started (batch or live); drop --batch", file=sys.stderr)
        return 2
    from .otel_export import otlp_export

    with otlp_export():  # a terminal run is traced like a served one when OTEL_EXPORTER_OTLP_ENDPOINT is set
        return anyio.run(
            lambda: cli_run.run_command(
                settings,
                task,
                resume=args.resume,
                as_json=args.json,
                max_subtasks=args.max_subtasks,
                max_concurrency=args.max_concurrency,
                batch=args.batch,
            )
        )


def args_problem(args: argparse.Namespace) -> str | None:
    """Why a task or run id on the command line cannot be used as text (the check MCP arguments get), else None.

    Bytes that are not UTF-8 reach Python as lone surrogates, which nothing can encode, store or send.
    """
    given = {
        "the task": " ".join(args.task) if args.command == "run" and args.task else None,
        "--resume": getattr(args, "resume", None),
        "the run id": getattr(args, "run_id", None),
    }
    for name, value in given.items():
        if value is not None and (problem := string_problem(value)) is not None:
            return f"{name} {problem} (some of its bytes are not UTF-8: is the terminal set to another encoding?)"
    return None


def worker_main(settings: Settings) -> int:
    """``subagent-mcp worker``: a Temporal worker with this process's settings, backend and limit on calls in flight."""
    from .temporal import require_temporalio

    try:
        require_temporalio()
    except ConfigError as exc:
        print(f"subagent-mcp: {exc}", file=sys.stderr)
        return 2
    problem = database_problem(settings)
    if problem:
        print(f"subagent-mcp: {problem}", file=sys.stderr)
        return 2
    import anyio

    from .temporal.worker import worker_command

    code = anyio.run(worker_command, settings)
    # The Temporal SDK's Rust runtime keeps threads that can crash CPython's finalization (SIGSEGV/SIGABRT,
    # temporalio/sdk-python#300): everything is closed and flushed by now, so leave without finalizing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def database_problem(settings: Settings) -> str | None:
    """Why the configured database cannot be used (named, with what to do), or None if it can."""
    import anyio

    from .replicas import store_location
    from .store import Store, StoreError

    async def check() -> None:
        async with Store.open(store_location(settings)):
            pass

    try:
        anyio.run(check)
    except StoreError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
