"""A private PostgreSQL cluster under ``DATA_DIR/pg`` for embedded defaults (no DATABASE_URL).

The server binaries come from the ``pgserver`` wheel (so a fresh machine needs only Python), falling
back to ``initdb``/``pg_ctl`` on PATH. The cluster listens only on a Unix socket, never on TCP. It is
started detached with ``pg_ctl`` so that a daemon killed with SIGKILL leaves a healthy server that the
next start simply reuses; the DATA_DIR lock (see ``datadir.py``) guarantees one daemon per cluster.

PostgreSQL refuses to run as root. When radsched itself runs as root (a container, a demo VM) the
cluster is owned by and run as ``nobody``; under systemd radsched has its own user and this never applies.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from radsched.errors import StartupError

log = logging.getLogger("radsched.storage.embedded")

DATABASE_NAME = "radsched"
SUPERUSER = "postgres"
# Unix socket paths are limited to ~107 bytes; keep a margin for ".s.PGSQL.5432".
_MAX_SOCKET_DIR = 90


def find_binaries() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    # Locate pgserver's bundled binaries without importing it: its import has side effects
    # (runtime directories, warnings) that a daemon has no use for.
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "pginstall" / "bin"
            if (candidate / "pg_ctl").exists():
                return candidate
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    for versioned in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (versioned / "pg_ctl").exists():
            return versioned
    raise StartupError(
        "embedded PostgreSQL: no server binaries found (install the 'pgserver' package or "
        "PostgreSQL's initdb/pg_ctl), or set RADSCHED_DATABASE_URL"
    )


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    """Handle on a running embedded cluster."""

    root: Path
    socket_dir: Path
    run_as: str | None
    started_here: bool

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"


def _run_as_user() -> str | None:
    return "nobody" if os.geteuid() == 0 else None


def _socket_dir(root: Path) -> Path:
    preferred = root / "run"
    if len(str(preferred.resolve())) <= _MAX_SOCKET_DIR:
        return preferred
    # DATA_DIR is too deep for a socket path; use a short private directory recorded in the cluster.
    marker = root / "socket_dir"
    if marker.exists():
        recorded = Path(marker.read_text().strip())
        if recorded.is_dir():
            return recorded
    short = Path(tempfile.mkdtemp(prefix="radsched-pg-"))
    marker.write_text(str(short))
    return short


def _run_sync(argv: list[str], *, user: str | None) -> subprocess.CompletedProcess[str]:
    uid = gid = None
    if user is not None:
        # Drop the group and supplementary groups too: running with gid 0 would make root-group
        # permission bits apply to the server instead of "other" bits.
        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
    return subprocess.run(  # noqa: S603 - fixed argv of PostgreSQL's own tools
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
        cwd="/",
        check=False,
        user=uid,
        group=gid,
        extra_groups=[] if uid is not None else None,
    )


async def _run(argv: list[str], *, user: str | None, what: str, check: bool = True) -> int:
    # A thread, not asyncio subprocesses: uvloop's subprocess support lacks user/group switching.
    proc = await asyncio.to_thread(_run_sync, argv, user=user)
    if check and proc.returncode != 0:
        text = proc.stdout.strip()
        last = text.splitlines()[-1] if text else f"exit {proc.returncode}"
        raise StartupError(f"embedded PostgreSQL: {what} failed: {last}")
    return proc.returncode


def _prepare_owner(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    # The unprivileged server must be able to traverse every parent of its directories. DATA_DIR
    # itself is ours: open it for traversal only (o+x), its secrets/ stays 0700.
    data_dir = path.resolve().parent
    if path.name == "pg":
        data_dir.chmod(data_dir.stat().st_mode | 0o001)
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid != entry.pw_uid and not st.st_mode & 0o001:
            raise StartupError(
                f"embedded PostgreSQL runs as '{user}' when radsched runs as root, and cannot "
                f"enter {parent}: make it traversable (chmod o+x) or run radsched as another user"
            )


async def start(root: Path) -> EmbeddedPostgres:
    """Initialise (first time) and start the cluster in ``root``; reuse it if already running."""
    bin_dir = find_binaries()
    user = _run_as_user()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _prepare_owner(root, user)
    data = root / "data"
    socket_dir = _socket_dir(root)
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    _prepare_owner(socket_dir, user)
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)  # a half-initialised cluster from an interrupted first start
        log.info("initialising embedded PostgreSQL", extra={"path": str(data)})
        await _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            user=user,
            what="initdb",
        )
    handle = EmbeddedPostgres(root=root, socket_dir=socket_dir, run_as=user, started_here=True)
    status = await _run(
        [str(bin_dir / "pg_ctl"), "status", "-D", str(data)], user=user, what="status", check=False
    )
    if status == 0:
        # Left running by a daemon that was killed; the DATA_DIR lock says no one else owns it.
        log.info("reusing running embedded PostgreSQL", extra={"path": str(data)})
        handle = EmbeddedPostgres(root, socket_dir, user, started_here=False)
    else:
        # Only the Unix socket, in a directory private to the cluster owner: no TCP exposure.
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' "
            "-c unix_socket_permissions=0700 -c fsync=on -c max_connections=100"
        )
        await _run(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(data),
                "-w",
                "-t",
                "60",
                "-l",
                str(root / "postgresql.log"),
                "-o",
                options,
            ],
            user=user,
            what="start",
        )
    await _ensure_database(handle)
    return handle


def running_dsn(root: Path) -> str:
    """DSN of a cluster another process (the running daemon) owns, for one-shot commands."""
    preferred = root / "run"
    marker = root / "socket_dir"
    socket_dir = Path(marker.read_text().strip()) if marker.exists() else preferred
    return f"postgresql://{SUPERUSER}@/{DATABASE_NAME}?host={socket_dir}"


async def _ensure_database(handle: EmbeddedPostgres) -> None:
    import asyncpg

    conn = await asyncpg.connect(handle.dsn("postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await conn.close()


async def stop(handle: EmbeddedPostgres) -> None:
    """Fast shutdown: disconnect clients, checkpoint, stop. Data is kept."""
    await _run(
        [str(find_binaries() / "pg_ctl"), "stop", "-D", str(handle.data), "-m", "fast", "-w"],
        user=handle.run_as,
        what="stop",
    )
