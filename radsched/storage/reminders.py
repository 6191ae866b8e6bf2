"""SQL of the appointment reminders (``appointment_reminders``, sql/0012).

Every function but :func:`next_due` takes a connection the caller owns, so planning joins the booking's
transaction, cancelling joins the change's, and sending joins the transaction that queues the text. The sealed
``phi`` (the number, the location's name, the modality and procedure code, the language) is sealed and opened
here under the aad ``reminder:<id>``; it is erased whenever a row stops being pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from radsched.privacy import PhiBox, PhiBoxError
from radsched.storage.db import Database

__all__ = [
    "KEEP_AFTER_START",
    "DueReminder",
    "cancel_pending",
    "claim_due",
    "conversation_state",
    "finish",
    "insert_planned",
    "next_due",
    "postpone",
]

State = Literal["pending", "sent", "cancelled", "skipped"]
KEEP_AFTER_START = timedelta(days=1)
"""A reminder row (and its sealed copy) is deleted this long after the start (radsched/retention.py)."""


def _aad(reminder_id: int) -> bytes:
    return f"reminder:{reminder_id}".encode()


async def insert_planned(
    conn: asyncpg.Connection,
    *,
    phi: PhiBox,
    appointment_id: str,
    start_at: datetime,
    phone_hash: str,
    due: Sequence[tuple[str, datetime]],
    payload: dict[str, Any],
    now: datetime,
) -> int:
    """Plan (kind, due_at) reminders of one appointment, each with its own sealed ``payload``; the ones
    already planned for this start are kept as they are. Returns how many rows were added."""
    added = 0
    for kind, due_at in due:
        reminder_id: int = await conn.fetchval(
            "SELECT nextval(pg_get_serial_sequence('appointment_reminders', 'id'))"
        )
        done = await conn.fetchval(
            """
            INSERT INTO appointment_reminders (id, appointment_id, kind, start_at, due_at, phone_hash, phi,
                                               expires_at, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
            ON CONFLICT (appointment_id, start_at, kind) DO NOTHING
            RETURNING 1
            """,
            reminder_id,
            appointment_id,
            kind,
            start_at,
            due_at,
            phone_hash,
            phi.seal(payload, aad=_aad(reminder_id)),
            start_at + KEEP_AFTER_START,
            now,
        )
        added += done is not None
    return added


async def cancel_pending(
    conn: asyncpg.Connection, appointment_id: str, *, outcome: str, now: datetime
) -> int:
    """The appointment was cancelled or moved: its pending reminders go, with their sealed copies."""
    result: str = await conn.execute(
        """
        UPDATE appointment_reminders
           SET state = 'cancelled', outcome = $2, phi = NULL, updated_at = $3
         WHERE appointment_id = $1 AND state = 'pending'
        """,
        appointment_id,
        outcome,
        now,
    )
    return int(result.rsplit(maxsplit=1)[-1])


@dataclass(frozen=True, slots=True)
class DueReminder:
    id: int
    appointment_id: str
    kind: str
    start_at: datetime
    due_at: datetime
    phone_hash: str
    payload: dict[str, Any] | None
    """Opened; None if the sealed copy is gone."""
    appointment_live: bool
    """The appointment still stands at the start this reminder was planned for (not cancelled, not moved)."""
    consent_state: str | None
    modality: str


async def claim_due(
    conn: asyncpg.Connection, *, phi: PhiBox, now: datetime, limit: int
) -> list[DueReminder]:
    """Pending reminders due at ``now``, locked for the caller's transaction; rows another daemon holds are
    skipped (it is sending them)."""
    records = await conn.fetch(
        """
        SELECT r.id, r.appointment_id, r.kind, r.start_at, r.due_at, r.phone_hash, r.phi,
               (a.status NOT IN ('cancelled', 'deleted') AND a.start_at = r.start_at) AS live,
               pc.consent_state, a.modality
          FROM appointment_reminders r
          JOIN appointments a ON a.appointment_id = r.appointment_id
          LEFT JOIN patient_sms_consents pc ON pc.phone_hash = r.phone_hash
         WHERE r.state = 'pending' AND r.due_at <= $1
         ORDER BY r.due_at
         LIMIT $2
           FOR UPDATE OF r SKIP LOCKED
        """,
        now,
        limit,
    )
    return [
        DueReminder(
            id=r["id"],
            appointment_id=r["appointment_id"],
            kind=r["kind"],
            start_at=r["start_at"],
            due_at=r["due_at"],
            phone_hash=r["phone_hash"],
            payload=_open(phi, r["id"], r["phi"]),
            appointment_live=bool(r["live"]),
            consent_state=r["consent_state"],
            modality=r["modality"],
        )
        for r in records
    ]


def _open(phi: PhiBox, reminder_id: int, sealed: bytes | None) -> dict[str, Any] | None:
    """The sealed copy, or None when it is gone or cannot be opened (a key no longer in PHI_KEY): such a
    reminder is skipped rather than blocking the queue."""
    if sealed is None:
        return None
    try:
        return phi.open(bytes(sealed), aad=_aad(reminder_id))
    except PhiBoxError:
        return None


async def finish(
    conn: asyncpg.Connection, reminder_id: int, *, state: State, outcome: str | None, now: datetime
) -> None:
    """Sent, skipped or cancelled: the row is done and its sealed copy erased."""
    await conn.execute(
        """
        UPDATE appointment_reminders SET state = $2, outcome = $3, phi = NULL, updated_at = $4
         WHERE id = $1 AND state = 'pending'
        """,
        reminder_id,
        state,
        outcome,
        now,
    )


async def postpone(
    conn: asyncpg.Connection, reminder_id: int, *, due_at: datetime, now: datetime
) -> None:
    """Found late outside the window: wait for the window's next opening."""
    await conn.execute(
        "UPDATE appointment_reminders SET due_at = $2, updated_at = $3 WHERE id = $1",
        reminder_id,
        due_at,
        now,
    )


async def next_due(db: Database) -> datetime | None:
    """The earliest pending reminder's time (the sweep's timer)."""
    found: datetime | None = await db.fetchval(
        "reminders.next_due",
        "SELECT min(due_at) FROM appointment_reminders WHERE state = 'pending'",
    )
    return found


async def conversation_state(conn: asyncpg.Connection, order_key: str) -> Any:
    """The (PHI-free) state of the order's latest conversation, for its language and chosen location; read
    without a lock (the booking's transaction must not wait for a reply being stepped)."""
    return await conn.fetchval(
        "SELECT state_data FROM sms_conversations WHERE order_key = $1"
        " ORDER BY created_at DESC LIMIT 1",
        order_key,
    )
