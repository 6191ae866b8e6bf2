"""The ``bookings`` table: one row per (order, slot) booking attempt, written before the HL7 booking is sent.

States: ``pending`` (sent or about to be; outcome unknown) → ``booked`` (AA) | ``rejected`` (AE: final) |
``failed`` (AR, or unresolvable: a later request for the same order and slot tries again with a new
control id). No PHI here: the order is referenced by its keyed hash, and ``reason`` is the RIS's MSA-3/ERR
text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from channels import Slot
from radsched.privacy import confirmation_code

BookingState = Literal["pending", "booked", "rejected", "failed"]
Source = Literal["rest", "sms"]

_BY_ID = "SELECT * FROM bookings WHERE id = $1"
_BY_ID_FOR_UPDATE = _BY_ID + " FOR UPDATE"
# Attempts at a unique confirmation code before giving up (31^6 codes: a clash is already rare).
_CODE_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class BookingRow:
    id: uuid.UUID
    order_key: str
    slot_id: str
    location_id: str
    modality: str
    state: BookingState
    control_id: str
    ack_code: str | None
    reason: str | None
    confirmation_code: str | None
    appointment_id: str
    filler_appointment_id: str | None
    start_at: datetime
    duration_minutes: int
    source: Source
    created_at: datetime
    correlation_id: str

    def slot(self) -> Slot:
        return Slot(
            self.slot_id, self.location_id, self.modality, self.start_at, self.duration_minutes
        )


def _row(record: asyncpg.Record) -> BookingRow:
    return BookingRow(
        id=record["id"],
        order_key=record["order_key"],
        slot_id=record["slot_id"],
        location_id=record["location_id"],
        modality=record["modality"],
        state=record["state"],
        control_id=record["control_id"],
        ack_code=record["ack_code"],
        reason=record["reason"],
        confirmation_code=record["confirmation_code"],
        appointment_id=record["appointment_id"],
        filler_appointment_id=record["filler_appointment_id"],
        start_at=record["start_at"],
        duration_minutes=record["duration_minutes"],
        source=record["source"],
        created_at=record["created_at"],
        correlation_id=record["correlation_id"],
    )


async def insert_pending(
    conn: asyncpg.Connection,
    *,
    order_key: str,
    slot: Slot,
    control_id: str,
    appointment_id: str,
    source: Source,
    correlation_id: str,
    now: datetime,
) -> BookingRow | None:
    """The new pending row, or None when this (order, slot) already has one."""
    record = await conn.fetchrow(
        """
        INSERT INTO bookings (id, order_key, slot_id, location_id, modality, state, control_id,
                              appointment_id, start_at, duration_minutes, source, created_at,
                              updated_at, correlation_id)
        VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $11, $12)
        ON CONFLICT (order_key, slot_id) DO NOTHING
        RETURNING *
        """,
        uuid.uuid4(),
        order_key,
        slot.id,
        slot.location_id,
        slot.modality,
        control_id,
        appointment_id,
        slot.start,
        slot.duration_minutes,
        source,
        now,
        correlation_id,
    )
    return _row(record) if record is not None else None


async def get(conn: asyncpg.Connection, order_key: str, slot_id: str) -> BookingRow | None:
    record = await conn.fetchrow(
        "SELECT * FROM bookings WHERE order_key = $1 AND slot_id = $2", order_key, slot_id
    )
    return _row(record) if record is not None else None


async def get_by_id(
    conn: asyncpg.Connection, booking_id: uuid.UUID, *, for_update: bool = False
) -> BookingRow | None:
    record = await conn.fetchrow(_BY_ID_FOR_UPDATE if for_update else _BY_ID, booking_id)
    return _row(record) if record is not None else None


async def mark_booked(
    conn: asyncpg.Connection,
    booking_id: uuid.UUID,
    *,
    ack_code: str,
    filler_appointment_id: str,
    now: datetime,
) -> BookingRow:
    """Record the AA with a fresh, unique confirmation code (retried on the rare clash)."""
    for attempt in range(_CODE_ATTEMPTS):
        try:
            async with conn.transaction():  # a savepoint: a clash must not abort the caller's work
                record = await conn.fetchrow(
                    """
                    UPDATE bookings
                       SET state = 'booked', ack_code = $2, confirmation_code = $3,
                           filler_appointment_id = nullif($4, ''), reason = NULL, updated_at = $5
                     WHERE id = $1
                    RETURNING *
                    """,
                    booking_id,
                    ack_code,
                    confirmation_code(),
                    filler_appointment_id,
                    now,
                )
        except asyncpg.UniqueViolationError:
            if attempt == _CODE_ATTEMPTS - 1:
                raise
            continue
        assert record is not None, "booking row vanished under FOR UPDATE"
        return _row(record)
    raise AssertionError("unreachable")


async def mark_unsuccessful(
    conn: asyncpg.Connection,
    booking_id: uuid.UUID,
    *,
    state: Literal["rejected", "failed"],
    ack_code: str | None,
    reason: str,
    now: datetime,
) -> None:
    await conn.execute(
        """
        UPDATE bookings SET state = $2, ack_code = $3, reason = $4, updated_at = $5
         WHERE id = $1 AND state = 'pending'
        """,
        booking_id,
        state,
        ack_code,
        reason[:500],
        now,
    )


async def retry_with(
    conn: asyncpg.Connection, booking_id: uuid.UUID, control_id: str, now: datetime
) -> BookingRow | None:
    """A failed attempt goes back to pending under a new control id (the RIS de-duplicates on MSH-10,
    so re-sending the old one would only fetch the old rejection)."""
    record = await conn.fetchrow(
        """
        UPDATE bookings
           SET state = 'pending', control_id = $2, ack_code = NULL, reason = NULL, updated_at = $3
         WHERE id = $1 AND state = 'failed'
        RETURNING *
        """,
        booking_id,
        control_id,
        now,
    )
    return _row(record) if record is not None else None


async def pending(
    conn: asyncpg.Connection, *, untouched_since: datetime, limit: int = 100
) -> list[BookingRow]:
    records = await conn.fetch(
        """
        SELECT * FROM bookings
         WHERE state = 'pending' AND updated_at < $1
         ORDER BY updated_at
         LIMIT $2
        """,
        untouched_since,
        limit,
    )
    return [_row(r) for r in records]
