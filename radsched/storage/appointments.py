"""SQL of the appointment record (``appointments``), its change requests and its events (sql/0008).

Every function takes a connection the caller owns, so a change joins the transaction that also writes the
EMR outbox rows and the event. No PHI in clear columns; ``phi`` is a sealed blob the caller opens.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

Status = Literal["booked", "rescheduled", "cancelled", "deleted"]
Origin = Literal["rest", "sms", "ris"]
ChangeOrigin = Literal["rest", "sms", "cli"]
ChangeState = Literal["pending", "done", "refused", "failed"]
EventKind = Literal["booked", "rescheduled", "modified", "cancelled", "deleted", "noshow"]

EVENTS_CHANNEL = "radsched_appointment_events"
"""NOTIFY channel of :func:`add_event`; the payload is the appointment id."""

ENDED: frozenset[str] = frozenset({"cancelled", "deleted"})


@dataclass(frozen=True, slots=True)
class AppointmentRow:
    appointment_id: str
    filler_appointment_id: str | None
    order_key: str | None
    booking_id: uuid.UUID | None
    slot_id: str
    location_id: str
    modality: str
    start_at: datetime
    duration_minutes: int
    status: Status
    origin: Origin
    changed_by: str
    confirmation_code: str | None
    emr_destinations: tuple[str, ...]
    dialect: str | None
    phi: bytes | None
    phi_expires_at: datetime
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def ended(self) -> bool:
        return self.status in ENDED


@dataclass(frozen=True, slots=True)
class ChangeRow:
    id: uuid.UUID
    appointment_id: str
    kind: Literal["cancel", "reschedule"]
    origin: ChangeOrigin
    state: ChangeState
    control_id: str
    slot_id: str | None
    location_id: str | None
    start_at: datetime | None
    duration_minutes: int | None
    ack_code: str | None
    order_control: str | None
    reason: str | None
    confirmation_code: str | None
    created_at: datetime
    updated_at: datetime
    correlation_id: str
    request_reason: str = ""


def _appointment(r: asyncpg.Record) -> AppointmentRow:
    return AppointmentRow(
        appointment_id=r["appointment_id"],
        filler_appointment_id=r["filler_appointment_id"],
        order_key=r["order_key"],
        booking_id=r["booking_id"],
        slot_id=r["slot_id"],
        location_id=r["location_id"],
        modality=r["modality"],
        start_at=r["start_at"],
        duration_minutes=r["duration_minutes"],
        status=r["status"],
        origin=r["origin"],
        changed_by=r["changed_by"],
        confirmation_code=r["confirmation_code"],
        emr_destinations=tuple(r["emr_destinations"] or ()),
        dialect=r["dialect"],
        phi=bytes(r["phi"]) if r["phi"] is not None else None,
        phi_expires_at=r["phi_expires_at"],
        version=r["version"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _change(r: asyncpg.Record) -> ChangeRow:
    return ChangeRow(
        id=r["id"],
        appointment_id=r["appointment_id"],
        kind=r["kind"],
        origin=r["origin"],
        state=r["state"],
        control_id=r["control_id"],
        slot_id=r["slot_id"],
        location_id=r["location_id"],
        start_at=r["start_at"],
        duration_minutes=r["duration_minutes"],
        ack_code=r["ack_code"],
        order_control=r["order_control"],
        reason=r["reason"],
        confirmation_code=r["confirmation_code"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        correlation_id=r["correlation_id"],
        request_reason=r["request_reason"] or "",
    )


# ---- the record ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewAppointment:
    appointment_id: str
    filler_appointment_id: str
    order_key: str | None
    booking_id: uuid.UUID | None
    slot_id: str
    location_id: str
    modality: str
    start_at: datetime
    duration_minutes: int
    origin: Origin
    confirmation_code: str
    dialect: str
    phi: bytes | None
    phi_expires_at: datetime
    phone_hash: str | None = None
    """The keyed hash of the number a text booking came from (replies find it by this)."""


async def insert(conn: asyncpg.Connection, new: NewAppointment, *, now: datetime) -> bool:
    """Record a booked appointment; the EMR destinations are those its S12 was queued to in this
    transaction. False when it was already recorded."""
    done = await conn.fetchval(
        """
        INSERT INTO appointments (appointment_id, filler_appointment_id, order_key, booking_id, slot_id,
                                  location_id, modality, start_at, duration_minutes, origin,
                                  confirmation_code, dialect, phi, phi_expires_at, emr_destinations,
                                  created_at, updated_at, phone_hash)
        VALUES ($1, nullif($2, ''), $3, $4, $5, $6, $7, $8, $9, $10, nullif($11, ''), $12, $13, $14,
                COALESCE((SELECT array_agg(DISTINCT destination ORDER BY destination) FROM hl7_outbox
                           WHERE appointment_id = $1 AND message_type = 'SIU^S12'), '{}'),
                $15, $15, $16)
        ON CONFLICT (appointment_id) DO NOTHING
        RETURNING 1
        """,
        new.appointment_id,
        new.filler_appointment_id,
        new.order_key,
        new.booking_id,
        new.slot_id,
        new.location_id,
        new.modality,
        new.start_at,
        new.duration_minutes,
        new.origin,
        new.confirmation_code,
        new.dialect,
        new.phi,
        new.phi_expires_at,
        now,
        new.phone_hash,
    )
    return done is not None


async def upcoming_for_phone(
    conn: asyncpg.Connection, phone_hash: str, *, now: datetime
) -> list[AppointmentRow]:
    """The live appointments booked by text from this phone that have not started, earliest first."""
    records = await conn.fetch(
        """
        SELECT * FROM appointments
         WHERE phone_hash = $1 AND start_at > $2 AND status IN ('booked', 'rescheduled')
         ORDER BY start_at
        """,
        phone_hash,
        now,
    )
    return [_appointment(r) for r in records]


async def mark_confirmed(conn: asyncpg.Connection, appointment_id: str, *, now: datetime) -> bool:
    """Record the patient's confirmation; False when it was confirmed already (a second "1")."""
    done = await conn.fetchval(
        """
        UPDATE appointments SET confirmed_at = $2
         WHERE appointment_id = $1 AND confirmed_at IS NULL
        RETURNING 1
        """,
        appointment_id,
        now,
    )
    return done is not None


async def get(
    conn: asyncpg.Connection, appointment_id: str, *, for_update: bool = False
) -> AppointmentRow | None:
    query = "SELECT * FROM appointments WHERE appointment_id = $1"
    record = await conn.fetchrow(query + (" FOR UPDATE" if for_update else ""), appointment_id)
    return _appointment(record) if record is not None else None


async def find_by_ids(
    conn: asyncpg.Connection, *, placer: str, filler: str, match: Sequence[str]
) -> AppointmentRow | None:
    """The appointment an SIU from the RIS names: by SCH-2 (filler) and/or SCH-1 (placer), in the
    order ``match`` gives (``("filler", "placer")`` by default in the daemon). Locked for update."""
    for key in match:
        if key == "filler" and filler:
            record = await conn.fetchrow(
                "SELECT * FROM appointments WHERE filler_appointment_id = $1"
                " ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
                filler,
            )
        elif key == "placer" and placer:
            record = await conn.fetchrow(
                "SELECT * FROM appointments WHERE appointment_id = $1 FOR UPDATE", placer
            )
        else:
            continue
        if record is not None:
            return _appointment(record)
    return None


async def find_by_order(conn: asyncpg.Connection, order_key: str) -> AppointmentRow | None:
    """The live appointment booked for an order (locked), if any."""
    record = await conn.fetchrow(
        """
        SELECT * FROM appointments
         WHERE order_key = $1 AND status NOT IN ('cancelled', 'deleted')
         ORDER BY created_at DESC LIMIT 1 FOR UPDATE
        """,
        order_key,
    )
    return _appointment(record) if record is not None else None


async def set_status(
    conn: asyncpg.Connection,
    appointment_id: str,
    *,
    status: Status,
    changed_by: str,
    now: datetime,
) -> AppointmentRow:
    """Cancelled/deleted (or modified: ``status`` unchanged): an ended appointment's PHI goes at once."""
    record = await conn.fetchrow(
        """
        UPDATE appointments
           SET status = $2, changed_by = $3, updated_at = $4, version = version + 1,
               phi = CASE WHEN $2 IN ('cancelled', 'deleted') THEN NULL ELSE phi END,
               phi_expires_at = CASE WHEN $2 IN ('cancelled', 'deleted') THEN $4 ELSE phi_expires_at END
         WHERE appointment_id = $1
        RETURNING *
        """,
        appointment_id,
        status,
        changed_by,
        now,
    )
    assert record is not None, "appointment vanished under FOR UPDATE"
    return _appointment(record)


async def move(
    conn: asyncpg.Connection,
    appointment_id: str,
    *,
    slot_id: str,
    location_id: str,
    start_at: datetime,
    duration_minutes: int,
    filler_appointment_id: str,
    confirmation_code: str | None,
    changed_by: str,
    phi_expires_at: datetime,
    now: datetime,
) -> AppointmentRow:
    record = await conn.fetchrow(
        """
        UPDATE appointments
           SET status = 'rescheduled', slot_id = $2, location_id = $3, start_at = $4,
               duration_minutes = $5,
               filler_appointment_id = coalesce(nullif($6, ''), filler_appointment_id),
               confirmation_code = coalesce($7, confirmation_code), changed_by = $8,
               phi_expires_at = $9, updated_at = $10, version = version + 1
         WHERE appointment_id = $1
        RETURNING *
        """,
        appointment_id,
        slot_id,
        location_id,
        start_at,
        duration_minutes,
        filler_appointment_id,
        confirmation_code,
        changed_by,
        phi_expires_at,
        now,
    )
    assert record is not None, "appointment vanished under FOR UPDATE"
    return _appointment(record)


async def purge_expired_phi(conn: asyncpg.Connection, *, now: datetime) -> int:
    """Retention: patient identifiers of appointments one day past their start (or ended) are erased."""
    result: str = await conn.execute(
        "UPDATE appointments SET phi = NULL WHERE phi IS NOT NULL AND phi_expires_at <= $1", now
    )
    return int(result.rsplit(maxsplit=1)[-1])


async def counts_by_status(conn: asyncpg.Connection) -> list[tuple[str, str, int]]:
    """(status, origin, count) for the metrics."""
    records = await conn.fetch(
        "SELECT status, origin, count(*) AS n FROM appointments GROUP BY status, origin"
    )
    return [(r["status"], r["origin"], int(r["n"])) for r in records]


# ---- change requests -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewChange:
    appointment_id: str
    kind: Literal["cancel", "reschedule"]
    origin: ChangeOrigin
    control_id: str
    correlation_id: str
    slot_id: str | None = None
    location_id: str | None = None
    start_at: datetime | None = None
    duration_minutes: int | None = None
    request_reason: str = ""


async def insert_change(
    conn: asyncpg.Connection, new: NewChange, *, now: datetime
) -> ChangeRow | None:
    """The new pending change, or None when the appointment already has one pending."""
    try:
        async with (
            conn.transaction()
        ):  # a savepoint: the unique violation must not abort the caller
            record = await conn.fetchrow(
                """
                INSERT INTO appointment_changes (id, appointment_id, kind, origin, control_id, slot_id,
                                                 location_id, start_at, duration_minutes, created_at,
                                                 updated_at, correlation_id, request_reason)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, nullif($12, ''))
                RETURNING *
                """,
                uuid.uuid4(),
                new.appointment_id,
                new.kind,
                new.origin,
                new.control_id,
                new.slot_id,
                new.location_id,
                new.start_at,
                new.duration_minutes,
                now,
                new.correlation_id,
                new.request_reason,
            )
    except asyncpg.UniqueViolationError:
        return None
    return _change(record) if record is not None else None


async def pending_change(conn: asyncpg.Connection, appointment_id: str) -> ChangeRow | None:
    record = await conn.fetchrow(
        "SELECT * FROM appointment_changes WHERE appointment_id = $1 AND state = 'pending'",
        appointment_id,
    )
    return _change(record) if record is not None else None


async def latest_change(
    conn: asyncpg.Connection, appointment_id: str, kind: str, *, slot_id: str | None = None
) -> ChangeRow | None:
    """The most recent change of ``kind`` (for a reschedule: to ``slot_id``) — what a repeat answers."""
    record = await conn.fetchrow(
        """
        SELECT * FROM appointment_changes
         WHERE appointment_id = $1 AND kind = $2 AND ($3::text IS NULL OR slot_id = $3)
         ORDER BY created_at DESC LIMIT 1
        """,
        appointment_id,
        kind,
        slot_id,
    )
    return _change(record) if record is not None else None


async def get_change(
    conn: asyncpg.Connection, change_id: uuid.UUID, *, for_update: bool = False
) -> ChangeRow | None:
    query = "SELECT * FROM appointment_changes WHERE id = $1"
    record = await conn.fetchrow(query + (" FOR UPDATE" if for_update else ""), change_id)
    return _change(record) if record is not None else None


async def settle_change(
    conn: asyncpg.Connection,
    change_id: uuid.UUID,
    *,
    state: ChangeState,
    ack_code: str | None,
    order_control: str | None,
    reason: str | None,
    confirmation_code: str | None = None,
    control_id: str | None = None,
    now: datetime,
) -> ChangeRow | None:
    """Record the outcome of a pending change (or, with ``control_id``, put a failed one back to pending
    under a new MSH-10). None when it was not in the expected state any more."""
    record = await conn.fetchrow(
        """
        UPDATE appointment_changes
           SET state = $2, ack_code = $3, order_control = $4, reason = left($5, 500),
               confirmation_code = coalesce($6, confirmation_code),
               control_id = coalesce($7, control_id), updated_at = $8
         WHERE id = $1 AND state = CASE WHEN $7::text IS NULL THEN 'pending' ELSE 'failed' END
        RETURNING *
        """,
        change_id,
        state,
        ack_code,
        order_control,
        reason,
        confirmation_code,
        control_id,
        now,
    )
    return _change(record) if record is not None else None


async def pending_changes(
    conn: asyncpg.Connection, *, untouched_since: datetime, limit: int = 100
) -> list[ChangeRow]:
    records = await conn.fetch(
        """
        SELECT * FROM appointment_changes
         WHERE state = 'pending' AND updated_at < $1
         ORDER BY updated_at LIMIT $2
        """,
        untouched_since,
        limit,
    )
    return [_change(r) for r in records]


# ---- events --------------------------------------------------------------------------------------------


async def add_event(
    conn: asyncpg.Connection,
    appointment_id: str,
    kind: EventKind,
    origin: str,
    *,
    start_at: datetime | None,
    previous_start: datetime | None = None,
    now: datetime,
) -> int:
    """Append an event and NOTIFY its listeners when the caller's transaction commits."""
    event_id: int = await conn.fetchval(
        """
        INSERT INTO appointment_events (appointment_id, kind, origin, start_at, previous_start, at)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id
        """,
        appointment_id,
        kind,
        origin,
        start_at,
        previous_start,
        now,
    )
    await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, appointment_id)
    return event_id


async def has_no_show(conn: asyncpg.Connection, appointment_id: str, *, start_at: datetime) -> bool:
    """True when a no-show of the appointment at ``start_at`` is recorded already (a resent S26)."""
    found = await conn.fetchval(
        """
        SELECT 1 FROM appointment_events
         WHERE appointment_id = $1 AND kind = 'noshow' AND start_at = $2
        """,
        appointment_id,
        start_at,
    )
    return found is not None


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    appointment_id: str
    kind: EventKind
    origin: str
    start_at: datetime | None
    previous_start: datetime | None
    at: datetime


async def events_after(conn: asyncpg.Connection, after_id: int, *, limit: int = 500) -> list[Event]:
    """Events with an id above ``after_id`` (a reader's cursor), oldest first."""
    records = await conn.fetch(
        "SELECT * FROM appointment_events WHERE id > $1 ORDER BY id LIMIT $2", after_id, limit
    )
    return [
        Event(
            r["id"],
            r["appointment_id"],
            r["kind"],
            r["origin"],
            r["start_at"],
            r["previous_start"],
            r["at"],
        )
        for r in records
    ]


async def booking_origin(conn: asyncpg.Connection, booking_id: uuid.UUID) -> tuple[str, str]:
    """(source, order_key) of the booking that made an appointment."""
    record = await conn.fetchrow("SELECT source, order_key FROM bookings WHERE id = $1", booking_id)
    assert record is not None, "the booking hook runs in the booking's own transaction"
    return str(record["source"]), str(record["order_key"])


async def pending_booking_for(conn: asyncpg.Connection, appointment_id: str) -> bool:
    """True while the booking that will create ``appointment_id`` has not been answered yet."""
    found = await conn.fetchval(
        "SELECT 1 FROM bookings WHERE appointment_id = $1 AND state = 'pending'", appointment_id
    )
    return found is not None


# ---- the EMR outbox rows of an appointment ---------------------------------------------------------------


async def dead_predecessor(
    conn: asyncpg.Connection, destination: str, appointment_id: str
) -> str | None:
    """MSH-10 of a dead-lettered earlier message (the S12, or a change) of this appointment at this
    destination, if any: a change queued behind it must not reach the EMR before it does.

    The earlier rows are locked until the caller commits, so a sender dead-lettering one of them at the
    same moment either finishes first (and we see it dead) or waits for our row to exist (and holds it,
    :func:`hold_followers`): neither order lets the change slip past."""
    rows = await conn.fetch(
        """
        SELECT control_id, state FROM hl7_outbox
         WHERE destination = $1 AND appointment_id = $2
         ORDER BY id
           FOR UPDATE
        """,
        destination,
        appointment_id,
    )
    return next((r["control_id"] for r in rows if r["state"] == "dead"), None)


HELD_PREFIX = "held: follows dead-lettered "
"""``last_error`` of a change held back because an earlier message of its appointment is dead."""


async def hold_followers(conn: asyncpg.Connection, row_id: int, *, now: datetime) -> int:
    """After row ``row_id`` was dead-lettered: the pending change notifications queued behind it for the
    same appointment and destination are dead-lettered too (``outbox retry`` of the first releases them),
    so an S13/S15 never reaches an EMR that never got the S12."""
    result: str = await conn.execute(
        """
        UPDATE hl7_outbox f
           SET state = 'dead', dead_at = $2, last_error = $3 || d.control_id
          FROM hl7_outbox d
         WHERE d.id = $1 AND d.state = 'dead' AND d.appointment_id IS NOT NULL
           AND f.destination = d.destination AND f.appointment_id = d.appointment_id
           AND f.id > d.id AND f.state = 'pending' AND f.origin = 'change'
        """,
        row_id,
        now,
        HELD_PREFIX,
    )
    return int(result.rsplit(" ", 1)[-1])


async def release_followers(conn: asyncpg.Connection, row_id: int, *, now: datetime) -> int:
    """After row ``row_id`` was requeued: the changes held behind it go back to pending (same ids, so the
    FIFO order is kept)."""
    result: str = await conn.execute(
        """
        UPDATE hl7_outbox f
           SET state = 'pending', dead_at = NULL, next_attempt_at = $2, rejections = 0
          FROM hl7_outbox d
         WHERE d.id = $1 AND f.destination = d.destination AND f.appointment_id = d.appointment_id
           AND f.state = 'dead' AND f.last_error = $3 || d.control_id
        """,
        row_id,
        now,
        HELD_PREFIX,
    )
    return int(result.rsplit(" ", 1)[-1])


async def audit(
    conn: asyncpg.Connection,
    *,
    appointment_id: str,
    by: str,
    old: str,
    new: str,
    note: str,
    now: datetime,
) -> None:
    """A support action on an appointment (``radsched appointment cancel``) in ``config_audit``."""
    await conn.execute(
        """
        INSERT INTO config_audit (changed_at, changed_by, item, old_value, new_value, note)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        now,
        by,
        f"appointment:{appointment_id}",
        old,
        new,
        note,
    )
