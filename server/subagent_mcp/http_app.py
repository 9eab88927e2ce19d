"""Serving MCP over streamable HTTP: loopback by default, a bearer token to go anywhere else.

Policy, checked before any socket is bound:

- A loopback host (``127.0.0.1``, ``localhost``, ``::1``, any ``127.x``) is served as is, with the SDK's
  DNS-rebinding protection: a foreign ``Host`` gets 421, a foreign ``Origin`` 403.
- Any other host needs both ``allow_remote=True`` (``--allow-remote``) and ``SUBAGENT_MCP_HTTP_TOKEN``;
  otherwise ``ConfigError``. A named host or address only accepts requests whose ``Host`` names it; a
  wildcard bind (``0.0.0.0``, ``::``) cannot know its names, so it checks no ``Host`` and the token is the guard.
- With a token configured (on any host), a request without ``Authorization: Bearer <token>`` gets a 401
  whose short JSON body says a token is required and where it is configured (never what was sent).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import shlex
import socket
import sys
from collections.abc import Callable
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from .demo import DEMO_NOTE
from .errors import ConfigError, SubagentMCPError
from .mcp_base import SubagentServer
from .settings import Settings

log = logging.getLogger("subagent_mcp.http")

MCP_PATH = "/mcp"
MIN_TOKEN_LENGTH = 16
TOKEN_VAR = "SUBAGENT_MCP_HTTP_TOKEN"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
SHUTDOWN_GRACE_S = 5
"""Seconds open connections get to finish when the server stops, before their tasks are cancelled."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name counts as remote, whatever it resolves to."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_token(settings: Settings) -> str | None:
    """The configured bearer token, or None when unset or blank.

    Raises:
        ConfigError: the token is too short to be a secret.
    """
    token = settings.http_token.get_secret_value().strip() if settings.http_token is not None else ""
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{TOKEN_VAR} is too short: use at least {MIN_TOKEN_LENGTH} random characters, "
            "e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return token


def check_bind(settings: Settings, host: str, *, allow_remote: bool) -> str | None:
    """Apply the bind policy (module docstring) and return the token requests must carry, if any.

    Raises:
        ConfigError: a non-loopback host without ``allow_remote`` and a token, or a token too short.
    """
    token = http_token(settings)
    if is_loopback(host) or (allow_remote and token):
        return token
    missing = [
        *([] if allow_remote else ["pass --allow-remote"]),
        *([] if token else [f"set {TOKEN_VAR} to a long random secret that clients send as 'Authorization: Bearer'"]),
    ]
    raise ConfigError(
        f"refusing to serve HTTP on {host or '0.0.0.0'}: it is not a loopback address, so anyone who can reach it "
        f"could run subagents on your API key. To serve it anyway, {' and '.join(missing)}; "
        "or bind 127.0.0.1 (the default)."
    )


def transport_security(host: str) -> TransportSecuritySettings:
    """Host/Origin checks for ``host``: loopback names, the bind name itself, or none for a wildcard bind."""
    if host in WILDCARD_HOSTS:  # reachable under any name; the required token is the guard
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = ["127.0.0.1", "localhost", "[::1]"] if is_loopback(host) else []
    bracketed = f"[{host}]" if ":" in host else host
    if bracketed not in names:
        names.append(bracketed)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[form for name in names for form in (f"{name}:*", name)],
        allowed_origins=[form for name in names for form in (f"http://{name}:*", f"http://{name}")],
    )


UNAUTHORIZED_HELP = (
    f"this MCP server requires 'Authorization: Bearer <token>' with the token set on the server as {TOKEN_VAR}; "
    "in Claude Code add it with: claude mcp add --transport http --scope user NAME URL "
    '--header "Authorization: Bearer <token>"'
)


def unauthorized_body(scheme: bytes, credentials: bytes) -> bytes:
    """The 401's JSON body (RFC 6750 fields): what is missing and where to configure it, never what was sent."""
    if scheme.lower() != b"bearer" or not credentials.strip():
        error, description = "invalid_request", f"no bearer token was sent: {UNAUTHORIZED_HELP}"
    else:
        error, description = "invalid_token", f"the bearer token sent is not this server's: {UNAUTHORIZED_HELP}"
    return json.dumps({"error": error, "error_description": description}).encode()


class BearerTokenGate:
    """ASGI middleware: any request without ``Authorization: Bearer <token>`` gets a 401 saying what is needed."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest()  # only the digest is kept, compared in constant time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        scheme, _, credentials = next((v for k, v in headers if k == b"authorization"), b"").partition(b" ")
        if self._authorized(scheme, credentials):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            body = unauthorized_body(scheme, credentials)
            reply = [(b"www-authenticate", b"Bearer"), (b"content-type", b"application/json")]
            reply.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": 401, "headers": reply})
            await send({"type": "http.response.body", "body": body})
        else:  # a websocket: closing before accept answers 403
            await send({"type": "websocket.close", "code": 1008})

    def _authorized(self, scheme: bytes, credentials: bytes) -> bool:
        digest = hashlib.sha256(credentials.strip()).digest()
        return hmac.compare_digest(digest, self._digest) and scheme.lower() == b"bearer"


def build_http_app(server: MCPServer[Any], settings: Settings, *, host: str, allow_remote: bool = False) -> ASGIApp:
    """The ASGI app serving ``server`` at ``/mcp``; its lifespan runs the server's (and so the service's).

    Raises:
        ConfigError: the bind policy refuses ``host`` (see the module docstring).
    """
    token = check_bind(settings, host, allow_remote=allow_remote)
    if isinstance(server, SubagentServer):
        server.remote_clients = not is_loopback(host)
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=transport_security(host))
    return BearerTokenGate(app, token) if token else app


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one).

    Raises:
        ConfigError: the address cannot be bound (port in use, unknown host, ...).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    dualstack = host == "::" and socket.has_dualstack_ipv6()
    try:
        return socket.create_server((host.strip("[]"), port), family=family, dualstack_ipv6=dualstack)
    except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
        in_use = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
        reason = "the port is already in use" if in_use else (getattr(exc, "strerror", None) or str(exc)).rstrip(".")
        raise ConfigError(
            f"cannot listen on {host_port(host, port)}: {reason}; choose another with --port or SUBAGENT_MCP_HTTP_PORT"
        ) from None


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, calling ``on_started`` once it accepts connections and the app's lifespan has run."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


async def serve_http(
    server: MCPServer[Any],
    settings: Settings,
    host: str,
    port: int,
    *,
    allow_remote: bool = False,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``server`` over streamable HTTP until cancelled (or SIGINT/SIGTERM); ``task_status`` gets the port.

    Raises:
        ConfigError: the bind policy refuses ``host``, or the address cannot be bound.
        SubagentMCPError: the app's lifespan failed at startup (uvicorn logged why).
    """
    app = build_http_app(server, settings, host=host, allow_remote=allow_remote)
    with listen_socket(host, port) as sock:
        bound_port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="on",  # a failing lifespan stops startup ("auto" would serve without the service)
            interface="asgi3",
            log_config=None,  # uvicorn's records go to the root handlers, where secrets are redacted
            log_level=settings.log_level.lower(),
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        ready, done = anyio.Event(), anyio.Event()
        uv = _Uvicorn(config, on_started=ready.set)
        failed = False

        async def run_uvicorn() -> None:
            nonlocal failed
            with anyio.CancelScope(shield=True):  # stopped through should_exit, so shutdown always runs in full
                try:
                    await uv.serve(sockets=[sock])
                except SystemExit:  # uvicorn's answer to a lifespan that failed at startup
                    failed = True
                finally:
                    ready.set()
                    done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_uvicorn)
            try:
                await ready.wait()
                if uv.started:
                    task_status.started(bound_port)
                    await done.wait()
            finally:
                uv.should_exit = True
        if failed:
            raise SubagentMCPError("the HTTP server failed to start; the log above says why")


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def http_url(host: str, port: int) -> str:
    """The URL a client on this machine (or, for a wildcard bind, on the network) uses to reach the server."""
    name = socket.gethostname() if host in WILDCARD_HOSTS else host
    return f"http://{host_port(name, port)}{MCP_PATH}"


def claude_add_command(url: str, *, with_token: bool, name: str = "subagents") -> str:
    """The ``claude mcp add`` line for ``url`` (user scope: seen in every folder); the token is named, never printed."""
    command = f"claude mcp add --transport http --scope user {name} {shlex.quote(url)}"
    if with_token:
        command += f' --header "Authorization: Bearer ${TOKEN_VAR}"'
    return command


class _Announce(TaskStatus[int]):
    """Prints where the server listens once it does (stderr: stdout stays free, as in stdio mode)."""

    def __init__(self, host: str, with_token: bool, demo: bool = False) -> None:
        self.host, self.with_token, self.demo = host, with_token, demo

    def started(self, value: int | None = None) -> None:
        url = http_url(self.host, value or 0)
        lines = [
            f"subagent-mcp: serving MCP over streamable HTTP at {url} (Ctrl+C to stop)",
            *([DEMO_NOTE] if self.demo else []),
            "Add it to Claude Code with:",
            f"  {claude_add_command(url, with_token=self.with_token)}",
        ]
        print("\n".join(lines), file=sys.stderr, flush=True)


def run_http_command(settings: Settings, host: str | None, port: int | None, *, allow_remote: bool) -> int:
    """``subagent-mcp serve --http``: serve until interrupted; errors are one line on stderr and exit code 2."""
    from .mcp_server import create_server

    host = settings.http_host if host is None else host
    port = settings.http_port if port is None else port
    try:
        token = check_bind(settings, host, allow_remote=allow_remote)
        if settings.anthropic_api_key is None and not settings.demo:
            log.warning("ANTHROPIC_API_KEY is not set: tools that call a model will say so until it is")
        server = create_server(settings)
        announce = _Announce(host, with_token=token is not None, demo=settings.demo)
        anyio.run(lambda: serve_http(server, settings, host, port, allow_remote=allow_remote, task_status=announce))
    except SubagentMCPError as exc:
        print(f"subagent-mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT once it has shut down gracefully: a normal stop
        return 0
    return 0
