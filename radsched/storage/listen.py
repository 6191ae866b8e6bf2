"""A session of its own that LISTENs on one channel: how a component hears another daemon's
NOTIFY (a modality switched, an SMS queued, an SIU queued) without polling.

Why a session outside the pool: LISTEN belongs to a session, and a pooled connection would carry
the subscription (and, for the EMR coordinator, its advisory locks) back into the pool. The
session is named (``application_name``), so ``pg_stat_activity`` shows who listens. A lost session
is reported once through ``on_lost``: NOTIFYs would otherwise just stop, silently; closing it
ourselves is not a loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import asyncpg

CLOSE_TIMEOUT_S = 2.0


class Listening:
    """One LISTEN session; :attr:`conn` may also run this component's own statements."""

    def __init__(self, conn: asyncpg.Connection, on_lost: Callable[[], None] | None) -> None:
        self.conn = conn
        self._on_lost = on_lost
        if on_lost is not None:
            conn.add_termination_listener(self._terminated)

    @property
    def is_open(self) -> bool:
        return not self.conn.is_closed()

    def _terminated(self, _conn: object) -> None:
        if self._on_lost is not None:
            self._on_lost()

    async def aclose(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close without reporting a loss; a session that does not close in time is cut."""
        self._on_lost = None
        if self.conn.is_closed():
            return
        try:
            await asyncio.wait_for(self.conn.close(), timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            self.conn.terminate()


async def listen(
    dsn: str,
    channel: str,
    on_notify: Callable[[str], None],
    *,
    name: str,
    on_lost: Callable[[], None] | None = None,
    connect_timeout: float = 10.0,
    server_settings: Mapping[str, str] | None = None,
) -> Listening:
    """Open a session named ``name`` that calls ``on_notify(payload)`` for each NOTIFY on
    ``channel``. Raises what ``asyncpg.connect`` raises; a half-opened session is closed."""
    conn = await asyncpg.connect(
        dsn,
        timeout=connect_timeout,
        server_settings={"application_name": name, **(server_settings or {})},
    )
    try:
        await conn.add_listener(channel, lambda _c, _pid, _ch, payload: on_notify(payload))
    except BaseException:
        conn.terminate()
        raise
    return Listening(conn, on_lost)
