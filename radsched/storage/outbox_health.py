"""How the outboxes are holding up: dead row versions, the oldest waiting row, the oldest open
transaction. Read every ``interval`` seconds from ``pg_stat_user_tables``, the outbox tables and
``pg_stat_activity``; exported as gauges (docs/operations.md, docs/performance.md "Outbox churn").

A queue table that has churned is slow to claim from only while its dead rows cannot be vacuumed:
migration 0007 makes autovacuum take them after 1,000, and the one thing it cannot get past is a
transaction held open somewhere on the database, which ``radsched_db_oldest_transaction_seconds``
shows. The figures are counts and ages only: no PHI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from radsched.storage.db import Database
from radsched.tasks import spawn

log = logging.getLogger("radsched.storage.outbox_health")

OUTBOXES = ("hl7_outbox", "sms_outbox")
INTERVAL_S = 15.0

# n_dead_tup is the statistics collector's estimate (updated as transactions end, reset by vacuum).
_DEAD_ROWS = """
SELECT relname, n_dead_tup FROM pg_stat_user_tables
 WHERE relname = ANY($1::text[]) AND schemaname = current_schema()
"""
# Pending = not yet handed over: an SIU not yet ACKed, a text not yet accepted by Twilio.
_OLDEST_PENDING = """
SELECT 'hl7_outbox' AS outbox,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS age
  FROM hl7_outbox WHERE state = 'pending'
UNION ALL
SELECT 'sms_outbox', coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
  FROM sms_outbox WHERE state IN ('pending', 'sending')
"""
# Any session on this database, ours or not, whose open transaction keeps vacuum from removing rows.
_OLDEST_TRANSACTION = """
SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
"""


class OutboxHealth:
    def __init__(self, db: Database, registry: CollectorRegistry | None) -> None:
        self._db = db
        self.dead_rows = Gauge(
            "radsched_outbox_dead_rows",
            "Dead row versions in an outbox table not yet vacuumed (pg_stat_user_tables).",
            ["outbox"],
            registry=registry,
        )
        self.oldest_pending = Gauge(
            "radsched_outbox_oldest_pending_seconds",
            "Age of the oldest row an outbox has not handed over yet (0 when none).",
            ["outbox"],
            registry=registry,
        )
        self.oldest_transaction = Gauge(
            "radsched_db_oldest_transaction_seconds",
            "Age of the oldest open transaction of any session on the database (0 when none).",
            registry=registry,
        )
        for outbox in OUTBOXES:
            self.dead_rows.labels(outbox).set(0)
            self.oldest_pending.labels(outbox).set(0)

    async def refresh(self) -> None:
        async with self._db.transaction("outbox.health") as conn:
            dead = await conn.fetch(_DEAD_ROWS, list(OUTBOXES))
            pending = await conn.fetch(_OLDEST_PENDING)
            oldest_xact = await conn.fetchval(_OLDEST_TRANSACTION)
        for row in dead:
            self.dead_rows.labels(row["relname"]).set(row["n_dead_tup"])
        for row in pending:
            self.oldest_pending.labels(row["outbox"]).set(max(0.0, row["age"]))
        self.oldest_transaction.set(max(0.0, oldest_xact))

    async def run(self, interval: float = INTERVAL_S) -> None:
        while True:
            try:
                await self.refresh()
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                # The gauges keep their last values; the database's own alerts say why.
                log.warning("outbox health not read", extra={"error": type(exc).__name__})
            await asyncio.sleep(interval)


async def start(
    db: Database, registry: CollectorRegistry | None, stack: AsyncExitStack
) -> OutboxHealth:
    """Export the gauges and refresh them in the background until ``stack`` closes."""
    health = OutboxHealth(db, registry)
    task = spawn(health.run(), name="outbox-health")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    return health
