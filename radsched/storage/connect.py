"""Opening the database for the daemon and for one-shot commands (migrate, modality, outbox, …).

With embedded PostgreSQL the daemon owns the cluster through the DATA_DIR lock. A command run beside
a running daemon must not start a second server: it connects to the running one's Unix socket. When
no daemon is running, the command takes the lock, starts the cluster, and stops it when done.

Only the daemon and ``migrate`` (``create=True``) create DATA_DIR and the embedded cluster. Any other
command needs a daemon's data there and otherwise stops with :class:`~radsched.errors.NoDaemonData`;
with DATABASE_URL it does not touch DATA_DIR at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry

from radsched.datadir import DataDirLock, prepare_data_dir
from radsched.errors import NoDaemonData, StartupError
from radsched.settings import Settings
from radsched.storage import embedded
from radsched.storage.db import Database
from radsched.storage.roles import session_name


@dataclass(frozen=True, slots=True)
class Storage:
    db: Database
    dsn: str


async def open_database(
    dsn: str, registry: CollectorRegistry | None, *, what: str, application_name: str = "radsched"
) -> Database:
    try:
        return await Database.connect(dsn, registry=registry, application_name=application_name)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise StartupError(f"{what}: cannot connect to the database: {reason}") from None


@asynccontextmanager
async def storage(
    settings: Settings,
    stack: AsyncExitStack,
    registry: CollectorRegistry | None,
    *,
    owner: bool,
    create: bool = False,
) -> AsyncIterator[Storage]:
    """Yield an open database. ``owner=True`` (the daemon) insists on holding the DATA_DIR lock.

    ``create`` (implied by ``owner``): DATA_DIR and the embedded cluster may be made here.
    """
    create = create or owner
    embedded_data = settings.data_dir / "pg"
    if not create and settings.database_url is None and not embedded.initialised(embedded_data):
        raise NoDaemonData(settings.data_dir)
    # A command on an external database needs nothing from DATA_DIR (the lock is the daemon's).
    needs_dir = create or settings.database_url is None
    data_dir = prepare_data_dir(settings.data_dir) if needs_dir else settings.data_dir
    # A daemon's sessions say which roles it runs (radsched/storage/roles.py reads them); a one-shot
    # command's sessions run none.
    name = session_name(settings.role_set) if owner else "radsched"
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
        if owner:
            _lock(stack, data_dir, required=True)
        db = await open_database(dsn, registry, what="RADSCHED_DATABASE_URL", application_name=name)
    else:
        holds_lock = _lock(stack, data_dir, required=owner)
        root = data_dir / "pg"
        if holds_lock:
            pg = await embedded.start(root)
            stack.push_async_callback(embedded.stop, pg)
            dsn = pg.dsn()
        else:
            dsn = embedded.running_dsn(root)
        db = await open_database(dsn, registry, what="embedded PostgreSQL", application_name=name)
    stack.push_async_callback(db.close)
    yield Storage(db, dsn)


def _lock(stack: AsyncExitStack, data_dir: Path, *, required: bool) -> bool:
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except StartupError:
        if required:
            raise
        return False
    stack.callback(lock.release)
    return True
