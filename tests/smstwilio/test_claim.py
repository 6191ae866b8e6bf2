"""The SMS outbox claim on the sender's own session: one statement, committed to disk before it returns."""

from __future__ import annotations

import pytest

from radsched.storage.sms_outbox import DedicatedConnection, claim_due
from tests.smstwilio.conftest import Rig


async def test_the_claim_is_on_disk_when_it_returns_though_the_session_commits_lazily(
    rig: Rig,
) -> None:
    # The sender's session runs with synchronous_commit = off (its other writes may be lost in a
    # PostgreSQL crash). A claim may not: lost after the text left, the row would be pending again
    # and the text would go twice. The claim is one statement that turns the setting on for its own
    # transaction, so the WAL holding it is flushed before the answer comes back. Without that the
    # flush waits for the WAL writer (up to wal_writer_delay, 200 ms), far longer than this test.
    first = await rig.enqueue()
    session = DedicatedConnection(rig.dsn, name="test-claim")
    conn = await session.open()
    try:
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
        before = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        claimed = await claim_due(conn, now=rig.clock(), limit=16, claimed_by="test@1")
        flushed_past = await conn.fetchval(
            "SELECT pg_current_wal_flush_lsn() > $1::text::pg_lsn", before
        )
        assert [t.id for t in claimed] == [first]
        assert flushed_past, "the claim returned before its commit reached the disk"
        # The setting was the claim's transaction's only: the session's own stays as it was.
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
        row = await rig.row(first)
        assert (row["state"], row["claimed_by"], row["attempts"]) == ("sending", "test@1", 1)
        # Claimed rows are not claimed again.
        assert await claim_due(conn, now=rig.clock(), limit=16, claimed_by="test@1") == []
    finally:
        await session.close()


async def test_the_claim_refuses_to_run_inside_the_callers_transaction(rig: Rig) -> None:
    # Inside a transaction the claim would be committed only when the caller commits, after the
    # texts left: a crash in between would send them twice.
    await rig.enqueue()
    async with rig.db.transaction("test.claim") as conn:
        with pytest.raises(RuntimeError, match="outside a transaction"):
            await claim_due(conn, now=rig.clock(), limit=16, claimed_by="test@1")
