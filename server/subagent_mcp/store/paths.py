"""The store's contact with the OS: where the database lives, opening a file there safely, and pid liveness."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path

from .migrations import check_known, migrate
from .records import FIX_PERMISSIONS, refuse

APP_DIR = "subagent-mcp"
DB_FILENAME = "subagent-mcp.db"
MEMORY = ":memory:"
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another process's write lock (SQLite's busy_timeout) before failing."""


def default_db_path(
    environ: Mapping[str, str] | None = None, platform: str | None = None, home: Path | None = None
) -> Path:
    """The per-user database path for this platform; the arguments exist so tests need not touch the real ones."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    home = Path.home() if home is None else home
    if plat == "win32":
        local = env.get("LOCALAPPDATA")
        base = Path(local) if local else home / "AppData" / "Local"
    elif plat == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = env.get("XDG_DATA_HOME")
        # The XDG spec says a relative value is invalid and must be ignored.
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / APP_DIR / DB_FILENAME


def prepare_path(path: Path) -> None:
    """Create the parent folders of a new database, or refuse an existing file that is not a SQLite database.

    Reads at most 16 bytes and never writes to an existing file; a zero-byte file counts as new (as in SQLite).
    """
    try:
        exists = path.exists()
        if not exists:
            path.parent.mkdir(parents=True, exist_ok=True)
            return
    except OSError as exc:
        raise refuse(path, f"could not be checked or created ({_reason(exc)})", FIX_PERMISSIONS) from exc
    if not path.is_file():
        raise refuse(path, "is not a regular file")
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise refuse(path, f"could not be read ({_reason(exc)})", FIX_PERMISSIONS) from exc
    if head and head != SQLITE_HEADER:
        raise refuse(path, "is not a SQLite database")
    # SQLite would open these read-only without a word and fail at the first write, mid-run.
    if not os.access(path, os.W_OK):
        raise refuse(path, "is read-only", FIX_PERMISSIONS)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise refuse(
            path, "is in a folder this user cannot write to (SQLite keeps -wal and -shm files there)", FIX_PERMISSIONS
        )


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the database at ``path`` (or ``":memory:"``), check it, configure it and migrate it.

    An existing file is only read until it has passed every check; a new one is created with its folders.

    Raises:
        StoreError: the file is unreadable, not SQLite, damaged, another program's, or from a newer version.
    """
    shown = MEMORY if str(path) == MEMORY else str(Path(path).expanduser())
    if shown != MEMORY:
        prepare_path(Path(shown))
    try:
        # timeout= is SQLite's busy_timeout; autocommit mode, so transactions are exactly the ones we BEGIN.
        conn = sqlite3.connect(shown, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise refuse(shown, f"could not be opened ({exc})", FIX_PERMISSIONS) from exc
    try:
        _check(conn, shown)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # a commit survives power loss, not only a crash
        migrate(conn)
    except sqlite3.ProgrammingError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise refuse(shown, f"could not be prepared ({exc})", FIX_PERMISSIONS) from exc
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn


def _check(conn: sqlite3.Connection, shown: str) -> None:
    """Refuse a damaged database or one we did not create, before anything writes to it."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"]
    except sqlite3.OperationalError as exc:
        raise refuse(shown, f"could not be read ({exc})", FIX_PERMISSIONS) from exc
    except sqlite3.DatabaseError as exc:
        raise refuse(shown, f"is damaged ({exc})") from exc
    if problems:
        raise refuse(shown, f"is damaged ({'; '.join(problems[:3])})")
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    user_tables = [t for t in tables if not t.startswith("sqlite_")]
    if user_tables and "_migrations" not in user_tables:
        raise refuse(shown, f"is a SQLite database of another program (tables: {', '.join(sorted(user_tables)[:5])})")
    check_known(conn)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine; when unsure, say yes (never interrupt a live run)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, it is just not ours
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return not ok or code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's live process
        return True
    return True
