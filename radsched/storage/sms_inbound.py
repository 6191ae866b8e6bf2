"""``sms_inbound``: one row per Twilio webhook (MessageSid + event), so that each is acted on once.

A request claims the row before the engine runs and completes it after; a claim older than the
stale time (the request died mid-way) may be taken over by Twilio's retry. Nothing but the SID,
the event and times is stored.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

__all__ = ["claim", "complete", "relax_durability", "release"]


async def claim(
    conn: asyncpg.Connection, sid: str, event: str, now: datetime, *, done: bool, stale_s: float
) -> bool | None:
    """None when another request owns the webhook; True when this one is the first, False when
    it took over an earlier claim that went stale. ``done`` claims and completes in one."""
    owned: bool | None = await conn.fetchval(
        """
        INSERT INTO sms_inbound AS s (message_sid, event, received_at, claimed_at, completed_at,
                                      correlation_id)
        VALUES ($1, $2, $3, $3, CASE WHEN $4 THEN $3::timestamptz END, $1)
        ON CONFLICT (message_sid, event) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
            WHERE s.completed_at IS NULL
              AND s.claimed_at < $3::timestamptz - make_interval(secs => $5::float8)
        RETURNING xmax = 0
        """,
        sid,
        event,
        now,
        done,
        stale_s,
    )
    return owned


async def complete(conn: asyncpg.Connection, sid: str, event: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE sms_inbound SET completed_at = $3 WHERE message_sid = $1 AND event = $2",
        sid,
        event,
        now,
    )


async def release(conn: asyncpg.Connection, sid: str, event: str) -> None:
    """Forget an unfinished claim, so that Twilio's retry is processed."""
    await conn.execute(
        "DELETE FROM sms_inbound WHERE message_sid = $1 AND event = $2 AND completed_at IS NULL",
        sid,
        event,
    )


async def relax_durability(conn: asyncpg.Connection) -> None:
    """For the caller's transaction only: commit without waiting for the WAL flush."""
    await conn.execute("SET LOCAL synchronous_commit TO off")
