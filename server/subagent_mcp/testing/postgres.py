"""A throwaway PostgreSQL cluster on 127.0.0.1 from the installed Debian binaries, and a fresh database per test.

Never downloads anything: without ``initdb`` on this machine, ``find_bin_dir`` returns None and callers skip.
As root (CI), the cluster runs as the ``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TEST_PG_URL_ENV = "SUBAGENT_MCP_TEST_PG_URL"
"""A PostgreSQL URL (superuser, loopback) that tests create their databases on; .ci/run sets it."""


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl, else the one on PATH, else None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name))
    for bin_dir in reversed(candidates):
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _version(name: str) -> int:
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_cluster_user(argv: list[str]) -> list[str]:
    """``argv`` run as ``postgres`` when we are root (with runuser, else su), as is otherwise."""
    if os.name != "posix" or os.geteuid() != 0:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]


@contextmanager
def throwaway_cluster(bin_dir: Path, *, fsync: bool = False) -> Generator[str]:
    """Start a trust-auth cluster on a free loopback port; yield its superuser URL; stop it and delete it.

    Without ``fsync`` (tests) commits do not wait for the disk; benchmarks turn it on to be fair to SQLite.
    """
    root = Path(tempfile.mkdtemp(prefix="subagent-mcp-pg-"))
    data, log = root / "data", root / "server.log"
    if os.name == "posix" and os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    try:
        subprocess.run(
            _as_cluster_user([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root}" + ("" if fsync else " -F")
        subprocess.run(
            _as_cluster_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_cluster_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def fresh_database_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


async def create_database(admin_url: str) -> str:
    """Create an empty database on ``admin_url``'s server; return its URL."""
    import asyncpg

    name = fresh_database_name()
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    """Drop the database behind ``url`` (made by ``create_database``), cutting off any session still on it."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
