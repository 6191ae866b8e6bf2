"""``sms_conversations``: one row per SMS conversation, its state as JSON and its PHI sealed.

Every load locks the row (``FOR UPDATE OF c``) for the caller's transaction, and carries the phone's
standing consent along so that one round trip gives the driver everything it steps on. The driver
owns the meaning of the columns (state codec, PHI sealing); this module owns the statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from radsched.storage.audit import AuditTrail
from radsched.storage.db import Database

__all__ = [
    "by_id",
    "by_order",
    "due",
    "for_phone",
    "live_in_states",
    "lock_phone",
    "next_wake",
    "phone_state",
    "write",
]

_SELECT = """
SELECT c.id, c.phone_hash, c.order_key, c.modality, c.facility, c.state_data, c.phi, c.version,
       pc.consent_state
  FROM sms_conversations c
  LEFT JOIN patient_sms_consents pc ON pc.phone_hash = c.phone_hash
"""


def _query(where: str) -> str:
    return _SELECT + where


_BY_ID = _query("WHERE c.id = $1 FOR UPDATE OF c")
_BY_ORDER = _query("WHERE c.order_key = $1 FOR UPDATE OF c")
_LIVE_FOR_PHONE = _query(
    "WHERE c.phone_hash = $1 AND c.ended_at IS NULL ORDER BY c.updated_at DESC LIMIT 1 FOR UPDATE OF c"
)
_LATEST_FOR_PHONE = _query(
    "WHERE c.phone_hash = $1 ORDER BY c.updated_at DESC LIMIT 1 FOR UPDATE OF c"
)
_DUE = _query(
    """WHERE c.id = (SELECT id FROM sms_conversations
                     WHERE ended_at IS NULL AND wake_at <= $1
                     ORDER BY wake_at LIMIT 1 FOR UPDATE SKIP LOCKED)
       FOR UPDATE OF c"""
)

_INSERT = """
INSERT INTO sms_conversations
    (id, phone_hash, order_key, modality, facility, state, state_data, phi,
     version, created_at, updated_at, expires_at, wake_at, ended_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, 1, $9, $9, $10, $11, $12)
"""
# The sealed PHI is never rewritten, only deleted at the end.
_UPDATE = """
UPDATE sms_conversations
   SET state = $2, state_data = $3::jsonb, version = version + 1, updated_at = $4,
       expires_at = coalesce($5, expires_at), wake_at = $6,
       ended_at = CASE WHEN $7 THEN coalesce(ended_at, $4) ELSE ended_at END,
       phi = CASE WHEN $7 THEN NULL ELSE phi END
 WHERE id = $1
"""


async def by_id(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_BY_ID, conversation_id)


async def by_order(conn: asyncpg.Connection, order_key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(_BY_ORDER, order_key)


async def for_phone(conn: asyncpg.Connection, phone_hash: str) -> asyncpg.Record | None:
    """The live conversation of this phone, else its most recent one."""
    row = await conn.fetchrow(_LIVE_FOR_PHONE, phone_hash)
    if row is None:
        row = await conn.fetchrow(_LATEST_FOR_PHONE, phone_hash)
    return row


async def due(conn: asyncpg.Connection, now: datetime) -> asyncpg.Record | None:
    """One live conversation whose wake-up is due, skipping rows another worker holds."""
    return await conn.fetchrow(_DUE, now)


async def write(
    conn: asyncpg.Connection,
    params: Sequence[Any],
    *,
    new: bool,
    trail: AuditTrail | None,
    now: datetime,
) -> None:
    """Insert (``new``) or update the row with ``params`` in the order of ``_INSERT``/``_UPDATE``,
    and ``trail``'s audit rows in the same statement (one round trip per transition)."""
    sql = _INSERT if new else _UPDATE
    values = list(params)
    audit, audit_params = trail.insert(len(values) + 1) if trail else ("", [])
    if audit:
        sql = f"WITH audit AS ({audit}) {sql}"
        values += [now, *audit_params]
    await conn.execute(sql, *values)


async def next_wake(db: Database) -> datetime | None:
    """The nearest ``wake_at`` of a live conversation."""
    nearest: datetime | None = await db.fetchval(
        "sms.next_wake", "SELECT min(wake_at) FROM sms_conversations WHERE ended_at IS NULL"
    )
    return nearest


_PHONE_STATE = """
SELECT (SELECT consent_state FROM patient_sms_consents WHERE phone_hash = $1) AS consent,
       EXISTS (SELECT 1 FROM sms_conversations WHERE phone_hash = $1 AND ended_at IS NULL) AS busy
"""


async def lock_phone(conn: asyncpg.Connection, phone_hash: str) -> tuple[str | None, bool]:
    """Serialise new conversations of one phone for the caller's transaction; then return the
    phone's consent state and whether it has a live conversation.

    One round trip (``radsched_phone_lock``, migration 0021): the look runs inside the function
    after the lock was granted, with a fresh snapshot, so it sees what the lock waited for.
    """
    row = await conn.fetchrow("SELECT consent, busy FROM radsched_phone_lock($1)", phone_hash)
    assert row is not None
    return row["consent"], bool(row["busy"])


async def phone_state(conn: asyncpg.Connection, phone_hash: str) -> tuple[str | None, bool]:
    """The phone's consent state and whether it has a live conversation (no lock)."""
    row = await conn.fetchrow(_PHONE_STATE, phone_hash)
    return row["consent"], bool(row["busy"])


async def live_in_states(conn: asyncpg.Connection, states: Sequence[str]) -> list[uuid.UUID]:
    """Ids of live conversations in any of ``states``."""
    rows = await conn.fetch(
        "SELECT id FROM sms_conversations WHERE ended_at IS NULL AND state = ANY($1)", list(states)
    )
    return [r["id"] for r in rows]
