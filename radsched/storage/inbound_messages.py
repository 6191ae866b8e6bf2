"""``inbound_messages``: every HL7 message we accepted, by sender and MSH-10, with the ACK we sent.

The row is written in the transaction of the message's own work, so "recorded" means "done", and a
resend of the same sender + control id is answered with the stored ACK instead of running again.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

__all__ = ["claim", "settle"]


async def claim(
    conn: asyncpg.Connection,
    *,
    sender: str,
    control_id: str,
    message_type: str,
    received_at: datetime,
    ack_code: str,
    ack: bytes,
    correlation_id: str,
) -> bytes | None:
    """Serialise one sender + control id for the caller's transaction (across connections and
    daemons); return the ACK stored for it, or, when there is none, record this message with
    ``ack`` and return None.

    One round trip (``radsched_inbound_claim``, migration 0022): the look-up runs inside the
    function after the lock was granted, with a fresh snapshot, so a resend racing the original
    waits, then sees the original's committed row. ``ack`` is the answer the message gets when its
    work succeeds as expected; another answer replaces it with :func:`settle` before the commit.
    """
    stored = await conn.fetchval(
        "SELECT radsched_inbound_claim($1, $2, $3, $4, $5, $6, $7)",
        sender,
        control_id,
        message_type,
        received_at,
        ack_code,
        ack,
        correlation_id,
    )
    return bytes(stored) if stored is not None else None


async def settle(
    conn: asyncpg.Connection, *, sender: str, control_id: str, ack_code: str, ack: bytes
) -> None:
    """Replace the ACK that :func:`claim` recorded, in the same transaction."""
    await conn.execute(
        "UPDATE inbound_messages SET ack_code = $3, ack_payload = $4"
        " WHERE sender = $1 AND control_id = $2",
        sender,
        control_id,
        ack_code,
        ack,
    )
