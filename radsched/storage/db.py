"""The asyncpg pool and named transactions that are timed into a Prometheus histogram."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Histogram


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a pool connection without asyncpg's reset query (one round trip per transaction).

    asyncpg still rolls back an open transaction and drops listeners before calling this. What the
    default ``RESET ALL; UNLISTEN *; pg_advisory_unlock_all()`` would undo never happens on a pool
    connection here: settings are ``SET LOCAL``, advisory locks are transaction-level, LISTEN and
    session locks live on dedicated connections (storage/listen.py, storage/destination_locks.py),
    and the migration's session lock is released in its own ``finally``. Keep it that way: session
    state set on a pool connection would leak into the next transaction that borrows it.
    """
    del conn


class Database:
    """One pool for the whole daemon, created once at start and closed on shutdown.

    Every unit of work runs as ``async with db.transaction("name") as conn:`` so that its latency is
    recorded under a stable name; that is the per-transaction histogram operators look at first.
    """

    def __init__(self, pool: asyncpg.Pool, registry: CollectorRegistry | None) -> None:
        self.pool = pool
        self._seconds = Histogram(
            "radsched_db_transaction_seconds",
            "Duration of named database transactions.",
            ["name", "outcome"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        registry: CollectorRegistry | None,
        min_size: int = 2,
        max_size: int = 10,
        timeout: float = 10.0,
        application_name: str = "radsched",
    ) -> Database:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            command_timeout=60,
            # Every timestamp we store is timestamptz; make the session agree on UTC.
            # application_name also tells other daemons on this database which roles we run.
            server_settings={"timezone": "UTC", "application_name": application_name},
            reset=_keep_session,
        )
        return cls(pool, registry)

    @asynccontextmanager
    async def transaction(
        self, name: str, *, isolation: str = "read_committed"
    ) -> AsyncIterator[asyncpg.Connection]:
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self.pool.acquire() as conn, conn.transaction(isolation=isolation):
                yield conn
            outcome = "commit"
        finally:
            self._seconds.labels(name, outcome).observe(time.perf_counter() - started)

    async def fetchval(self, name: str, query: str, *args: Any) -> Any:
        async with self.transaction(name) as conn:
            return await conn.fetchval(query, *args)

    async def ping(self, timeout: float = 2.0) -> None:
        """One round trip; raises on failure. Used by /readyz."""
        async with self.pool.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout)

    async def close(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            self.pool.terminate()
