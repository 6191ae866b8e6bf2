"""The SIU sender's claim on the churned queue (issue 16, target 5): what it locks, what it waits for.

Store level on a real PostgreSQL: the claim is what ``radsched.emr.sender`` runs in its ``emr.claim``
transaction; the daemon-level delivery order is in test_outbox.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from radsched.storage import emr_outbox as store

DESTINATION = "emr-main"


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(database_url)
    try:
        yield c
    finally:
        await c.close()


async def enqueue(conn: asyncpg.Connection, n: int) -> list[int]:
    now = datetime.now(UTC)
    return [
        await store.insert(
            conn,
            store.NewMessage(
                destination=DESTINATION,
                control_id=f"C{i}",
                message_type="SIU^S12",
                payload=b"sealed",
                facility=None,
                origin="booking",
                appointment_id=f"A{i}",
                correlation_id="test",
            ),
            now=now,
        )
        for i in range(n)
    ]


async def claimed_ids(conn: asyncpg.Connection, limit: int = 10) -> list[int]:
    async with conn.transaction():
        return [r.id for r in await store.claim(conn, DESTINATION, limit)]


async def test_the_claim_commits_without_waiting_for_the_disk_and_leaves_the_session_alone(
    conn: asyncpg.Connection,
) -> None:
    # Waiting for the WAL flush of its row locks was the claim's tail on a churned queue; a lock
    # needs no durability. The session's own setting (durable writes elsewhere) is untouched.
    await enqueue(conn, 3)
    async with conn.transaction():
        assert len(await store.claim(conn, DESTINATION, 10)) == 3
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
    assert await conn.fetchval("SHOW synchronous_commit") == "on"


async def test_the_claim_stops_at_a_row_an_operator_holds_and_resumes_in_order(
    conn: asyncpg.Connection, database_url: str
) -> None:
    first, second, third = await enqueue(conn, 3)
    operator = await asyncpg.connect(database_url)
    try:
        tx = operator.transaction()
        await tx.start()
        await operator.execute("SELECT 1 FROM hl7_outbox WHERE id = $1 FOR UPDATE", second)
        assert await claimed_ids(conn) == [first]  # not `third`: skipping would break FIFO
        await operator.execute("SELECT 1 FROM hl7_outbox WHERE id = $1 FOR UPDATE", first)
        assert await claimed_ids(conn) == []
        await tx.rollback()
    finally:
        await operator.close()
    assert await claimed_ids(conn) == [first, second, third]
    assert await claimed_ids(conn, limit=2) == [first, second]


async def test_the_claim_refuses_to_run_outside_a_transaction(conn: asyncpg.Connection) -> None:
    await enqueue(conn, 1)
    with pytest.raises(RuntimeError, match="transaction"):
        await store.claim(conn, DESTINATION, 10)
