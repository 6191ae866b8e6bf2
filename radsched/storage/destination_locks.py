"""One dedicated PostgreSQL session per daemon: LISTEN for new outbox rows, hold destination locks.

Why a session of its own (not a pool connection): a session advisory lock lives exactly as long as the
session that took it. While this daemon is alive the lock says "I drain this destination"; when the
daemon dies its connection drops, PostgreSQL releases the lock, and another daemon's next ``try_lock``
(every ``takeover_s``) wins. A pooled connection would carry the lock back into the pool.

If the session itself is lost (database restart, network), every lock is gone with it: ``holds()``
turns False at once and the senders stop before their next message; the claim query also checks
``pg_locks`` for our backend pid (a fence), so a sender that has not noticed yet cannot claim work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable

from asyncpg import Connection, InterfaceError, PostgresError

from radsched.storage.emr_outbox import NOTIFY_CHANNEL, LockFence
from radsched.storage.listen import Listening, listen
from radsched.tasks import spawn

log = logging.getLogger("radsched.emr.coordinator")

# First key of the two-int4 advisory lock space for EMR destinations ("RSE1"); the second is a
# hash of the destination name. A hash collision only means one daemon drains both destinations.
DESTINATION_LOCK_CLASS = 0x52534531


def destination_lock(name: str) -> tuple[int, int]:
    return DESTINATION_LOCK_CLASS, zlib.crc32(name.encode()) & 0x7FFFFFFF


class Coordinator:
    def __init__(
        self,
        dsn: str,
        *,
        keepalive_s: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self.on_notify: Callable[[str], None] = lambda _destination: None
        """Called with the NOTIFY payload (a destination name, or ``*``)."""
        self._keepalive_s = keepalive_s
        self._connect_timeout = connect_timeout
        self._conn: Connection | None = None
        self._session: Listening | None = None
        self._pid = 0
        self._held: set[str] = set()
        self._lock = asyncio.Lock()  # asyncpg runs one query at a time per connection
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        await self._connect()
        self._task = spawn(self._keepalive(), name="emr-coordinator")

    async def _connect(self) -> None:
        session = await listen(
            self._dsn,
            NOTIFY_CHANNEL,
            self._notified,
            name="radsched-emr",
            on_lost=self._terminated,
            connect_timeout=self._connect_timeout,
        )
        self._session = session
        self._conn = session.conn
        self._pid = session.conn.get_server_pid()

    def _notified(self, payload: str) -> None:
        self.on_notify(payload)

    def _terminated(self) -> None:
        if self._held and not self._closing:
            log.warning(
                "coordinator session lost; releasing destinations", extra={"held": len(self._held)}
            )
        self._held.clear()

    def holds(self, name: str) -> bool:
        conn = self._conn
        return name in self._held and conn is not None and not conn.is_closed()

    async def try_lock(self, name: str) -> LockFence | None:
        """Take the destination's lock if free; the fence identifies it for the claim query."""
        classid, objid = destination_lock(name)
        async with self._lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                return None
            if name not in self._held:
                try:
                    got = await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1::int4, $2::int4)", classid, objid, timeout=5
                    )
                except (PostgresError, OSError, TimeoutError, InterfaceError):
                    return None
                if not got:
                    return None
                self._held.add(name)
            return LockFence(classid, objid, self._pid)

    def forget(self, name: str) -> None:
        """The fence says the lock is not ours (any more): the next ``try_lock`` asks PostgreSQL."""
        self._held.discard(name)

    async def _keepalive(self) -> None:
        """Notice a dead session within ``keepalive_s`` (NOTIFYs would stop silently) and reconnect."""
        delay = self._keepalive_s
        while not self._closing:
            await asyncio.sleep(delay)
            async with self._lock:
                if await self._alive():
                    delay = self._keepalive_s
                    continue
                self._held.clear()
                try:
                    await self._connect()
                except (PostgresError, OSError, TimeoutError) as exc:
                    log.warning("coordinator reconnect failed", extra={"error": type(exc).__name__})
                    delay = min(delay * 2, 30.0)
                    continue
            delay = self._keepalive_s
            log.info("coordinator session re-established")
            self.on_notify("*")  # every sender: try your lock again

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await conn.fetchval("SELECT 1", timeout=self._keepalive_s)
        except (PostgresError, OSError, TimeoutError, InterfaceError):
            conn.terminate()
            return False
        return True

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        session, self._session, self._conn = self._session, None, None
        self._held.clear()
        if session is not None:
            await session.aclose(timeout=5)
