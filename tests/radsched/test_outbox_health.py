"""The outbox health gauges read real PostgreSQL statistics: dead rows, oldest pending, oldest
transaction (radsched/storage/outbox_health.py)."""

from __future__ import annotations

import asyncpg
from prometheus_client import CollectorRegistry

from radsched.storage.db import Database
from radsched.storage.outbox_health import OutboxHealth
from tests.waiting import eventually


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def test_empty_outboxes_read_as_zero(db: Database) -> None:
    registry = CollectorRegistry()
    health = OutboxHealth(db, registry)
    await health.refresh()
    for outbox in ("hl7_outbox", "sms_outbox"):
        assert _value(registry, "radsched_outbox_oldest_pending_seconds", outbox=outbox) == 0
        assert _value(registry, "radsched_outbox_dead_rows", outbox=outbox) == 0


async def test_oldest_pending_row_per_outbox(db: Database) -> None:
    async with db.transaction("test") as conn:
        await conn.execute(
            "INSERT INTO hl7_outbox (destination, control_id, message_type, correlation_id,"
            " created_at) VALUES ('emr', 'C1', 'SIU^S12', 'c', now() - interval '120 seconds'),"
            " ('emr', 'C2', 'SIU^S12', 'c', now() - interval '10 seconds')"
        )
        # A delivered row does not count, however old.
        await conn.execute(
            "INSERT INTO sms_outbox (phone_hash, template_id, correlation_id, state, created_at)"
            " VALUES ('h', 't', 'c', 'delivered', now() - interval '1 day'),"
            " ('h', 't', 'c', 'sending', now() - interval '30 seconds')"
        )
    registry = CollectorRegistry()
    health = OutboxHealth(db, registry)
    await health.refresh()
    hl7 = _value(registry, "radsched_outbox_oldest_pending_seconds", outbox="hl7_outbox")
    sms = _value(registry, "radsched_outbox_oldest_pending_seconds", outbox="sms_outbox")
    assert 120 <= hl7 < 180
    assert 30 <= sms < 90


async def test_dead_rows_after_churn(db: Database, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO sms_outbox (phone_hash, template_id, correlation_id)"
            " SELECT 'h', 't', 'c' FROM generate_series(1, 200)"
        )
        await conn.execute("DELETE FROM sms_outbox")
        # Statistics reach the shared counters on the session's next flush; ask for it now.
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")
    finally:
        await conn.close()
    registry = CollectorRegistry()
    health = OutboxHealth(db, registry)

    async def counted() -> bool:
        await health.refresh()
        return _value(registry, "radsched_outbox_dead_rows", outbox="sms_outbox") >= 200

    await eventually(counted, what="200 dead rows counted")
    assert _value(registry, "radsched_outbox_dead_rows", outbox="hl7_outbox") == 0


async def test_an_open_transaction_elsewhere_is_seen(db: Database, database_url: str) -> None:
    registry = CollectorRegistry()
    health = OutboxHealth(db, registry)
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT count(*) FROM hl7_outbox")
        await health.refresh()
        assert _value(registry, "radsched_db_oldest_transaction_seconds") > 0
        await holder.execute("COMMIT")
        await health.refresh()
        assert _value(registry, "radsched_db_oldest_transaction_seconds") == 0
    finally:
        await holder.close()
