"""A private PostgreSQL cluster under ``DATA_DIR/pg`` for embedded defaults (no DATABASE_URL).

The server binaries come from the ``pgserver`` wheel (so a fresh machine needs only Python), falling
back to ``initdb``/``pg_ctl`` on PATH. The cluster listens only on a Unix socket, never on TCP. It is
started detached with ``pg_ctl`` so that a daemon killed with SIGKILL leaves a healthy server that the
next start simply reuses; the DATA_DIR lock (see ``datadir.py``) guarantees one daemon per cluster.

Hardening (issue 11, item 5; docs/security.md section 10.2):

* PostgreSQL refuses to run as root. When radsched itself runs as root (a container, CI, a demo VM)
  the cluster is owned by and run as a dedicated system account, ``radsched-pg``, created on first
  use (``nobody`` is shared with other daemons, which could then read the cluster's files and its
  ``/proc/PID/environ``). Under systemd radsched has its own user and this never applies.
* The server tools get a minimal environment (no ``RADSCHED_*`` secrets in ``/proc/PID/environ``).
* Clients authenticate with a password (SCRAM) even on the Unix socket, whose directory is 0700;
  the password is generated once into ``pg/password`` (0600, the daemon's user). A cluster created
  by an older radsched with trust authentication is switched over on its next start.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from radsched.errors import StartupError

log = logging.getLogger("radsched.storage.embedded")

DATABASE_NAME = "radsched"
SUPERUSER = "postgres"
# The account the server runs as when radsched runs as root (see the module docstring).
SERVER_ACCOUNT = "radsched-pg"
PASSWORD_FILE = "password"  # noqa: S105 - the name of the file, not a password
HBA = (
    "# Written by radsched (radsched/storage/embedded.py) on every start: Unix socket only,\n"
    "# and a password (SCRAM) even there.\n"
    "local all all scram-sha-256\n"
)
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
        return _dsn(self.root, self.socket_dir, database)


def _dsn(root: Path, socket_dir: Path, database: str) -> str:
    password = _read_password(root)
    auth = f"{SUPERUSER}:{password}" if password else SUPERUSER
    return f"postgresql://{auth}@/{database}?host={socket_dir}"


def _read_password(root: Path) -> str | None:
    try:
        return (root / PASSWORD_FILE).read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def _ensure_password(root: Path) -> str:
    existing = _read_password(root)
    if existing:
        return existing
    password = secrets.token_urlsafe(32)  # URL-safe: it goes into a DSN as is
    tmp = root / f".{PASSWORD_FILE}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(password + "\n")
    os.replace(tmp, root / PASSWORD_FILE)
    return password


def server_account() -> str | None:
    """The account the server runs as: ``None`` (ours) unless radsched runs as root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        _create_account()
    return SERVER_ACCOUNT


def _create_account() -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    argv += ["--shell", "/usr/sbin/nologin", SERVER_ACCOUNT]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    except OSError as exc:
        proc = subprocess.CompletedProcess(argv, 1, "", str(exc))
    try:
        pwd.getpwnam(SERVER_ACCOUNT)  # also covers a concurrent start that created it first
    except KeyError:
        raise StartupError(
            "embedded PostgreSQL cannot run as root and radsched could not create its account "
            f"'{SERVER_ACCOUNT}' ({proc.stderr.strip() or 'useradd failed'}): create it with "
            f"'useradd --system --user-group {SERVER_ACCOUNT}', run radsched as another user, "
            "or set RADSCHED_DATABASE_URL"
        ) from None
    log.info("created system account for embedded PostgreSQL", extra={"account": SERVER_ACCOUNT})


def _server_environment() -> dict[str, str]:
    """Just what PostgreSQL's tools need: never the daemon's environment and its secrets."""
    env = {"PATH": os.defpath, "LC_ALL": "C", "TZ": "UTC"}
    if "LD_LIBRARY_PATH" in os.environ:  # a PostgreSQL built into a private prefix
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


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
        env=_server_environment(),
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
    user = server_account()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    await _adopt(bin_dir, root, user)
    _prepare_owner(root, user)
    data = root / "data"
    socket_dir = _socket_dir(root)
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    socket_dir.chmod(0o700)
    _prepare_owner(socket_dir, user)
    password = _ensure_password(root)
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)  # a half-initialised cluster from an interrupted first start
        log.info("initialising embedded PostgreSQL", extra={"path": str(data)})
        await _initdb(bin_dir, root, user, password)
        _write_owned(data / "pg_hba.conf", HBA, user)
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
    await _ensure_database(handle, password, user)
    return handle


async def _initdb(bin_dir: Path, root: Path, user: str | None, password: str) -> None:
    # initdb reads the superuser's password from a file the server account can read; it is
    # removed straight after, the daemon's copy stays in pg/password.
    pwfile = root / ".initdb-password"
    _write_owned(pwfile, password + "\n", user)
    try:
        await _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            user=user,
            what="initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _write_owned(path: Path, text: str, user: str | None) -> None:
    """Write a 0600 file that the server account owns (it must read it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
    os.replace(tmp, path)


async def _adopt(bin_dir: Path, root: Path, user: str | None) -> None:
    """Hand a cluster an older radsched ran as ``nobody`` to the dedicated account."""
    data = root / "data"
    if user is None or not (data / "PG_VERSION").exists():
        return
    try:
        owner: str | None = pwd.getpwuid(data.stat().st_uid).pw_name
    except KeyError:
        owner = None
    if owner == user:
        return
    log.info("moving embedded PostgreSQL to its own account", extra={"account": user})
    if owner is not None:
        await _run(
            [str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"],
            user=owner,
            what="stop",
            check=False,
        )
    entry = pwd.getpwnam(user)
    for dirpath, _, filenames in os.walk(root):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in filenames:
            os.chown(Path(dirpath) / name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def initialised(root: Path) -> bool:
    """Whether ``root`` holds a cluster a daemon made (its data directory), without reading it."""
    return (root / "data").is_dir()


def running_dsn(root: Path) -> str:
    """DSN of a cluster another process (the running daemon) owns, for one-shot commands."""
    preferred = root / "run"
    marker = root / "socket_dir"
    socket_dir = Path(marker.read_text().strip()) if marker.exists() else preferred
    return _dsn(root, socket_dir, DATABASE_NAME)


async def _ensure_database(handle: EmbeddedPostgres, password: str, user: str | None) -> None:
    import asyncpg

    conn = await asyncpg.connect(handle.dsn("postgres"))
    try:
        hba = handle.data / "pg_hba.conf"
        if hba.read_text(encoding="utf-8", errors="replace") != HBA:
            # A cluster from before passwords (trust authentication): set the password while
            # trust still lets us in, then switch every connection to SCRAM.
            await conn.execute(f"ALTER ROLE {SUPERUSER} PASSWORD '{password}'")
            _write_owned(hba, HBA, user)
            await conn.execute("SELECT pg_reload_conf()")
            log.info("embedded PostgreSQL now requires a password")
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
