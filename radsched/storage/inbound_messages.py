"""``inbound_messages``: every HL7 message we accepted, by sender and MSH-10, with the ACK we sent.

The row is written in the transaction of the message's own work, so "recorded" means "done", and a
resend of the same sender + control id is answered with the stored ACK instead of running again.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

__all__ = ["lock_and_find", "record"]


async def lock_and_find(conn: asyncpg.Connection, sender: str, control_id: str) -> bytes | None:
    """Serialise one sender + control id for the caller's transaction (across connections and
    daemons), then return the ACK stored for it, if any.

    One round trip (``radsched_inbound_lock``, migration 0021): the look-up runs inside the
    function after the lock was granted, with a fresh snapshot, so a resend racing the original
    waits, then sees the original's committed row.
    """
    stored = await conn.fetchval("SELECT radsched_inbound_lock($1, $2)", sender, control_id)
    return bytes(stored) if stored is not None else None


async def record(
    conn: asyncpg.Connection,
    *,
    sender: str,
    control_id: str,
    message_type: str,
    received_at: datetime,
    ack_code: str,
    ack: bytes,
    correlation_id: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO inbound_messages
            (sender, control_id, message_type, received_at, ack_code, ack_payload, correlation_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        sender,
        control_id,
        message_type,
        received_at,
        ack_code,
        ack,
        correlation_id,
    )
