"""``waitlist_entries`` and ``waitlist_offers`` (sql/0018): earlier-slot offers (issue 13 item 5).

No number is stored here (the offer is texted to the number sealed in the appointment record). The
unique partial indexes are what make "never two patients for one slot" hold across transactions and
daemons: :func:`offer` inserts with ``ON CONFLICT DO NOTHING`` and returns None when the slot (or the
phone) already has a live offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from radsched.storage.db import Database

__all__ = [
    "Entry",
    "Offer",
    "OfferState",
    "accepting",
    "claim_expired",
    "close_vacancy_entries",
    "end_entries",
    "entry_of_appointment",
    "join",
    "live_offer_for_phone",
    "live_offer_of_entry",
    "next_hold_end",
    "offer",
    "offered_entries",
    "settle_offer",
    "vacancy_closed",
    "waiting_entries",
    "waiting_for_appointments",
]

OfferState = Literal["offered", "accepting", "taken", "declined", "expired", "unavailable"]
EntryEnd = Literal["left", "filled", "ended"]
_LIVE = ("offered", "accepting")


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    appointment_id: str
    location_id: str
    modality: str
    phone_hash: str
    joined_at: datetime
    appointment_start: datetime


@dataclass(frozen=True, slots=True)
class Offer:
    id: int
    vacancy: str
    slot_id: str
    location_id: str
    modality: str
    slot_start: datetime
    entry_id: int
    appointment_id: str
    phone_hash: str
    state: OfferState
    hold_until: datetime


def _offer(r: asyncpg.Record) -> Offer:
    return Offer(
        id=r["id"],
        vacancy=r["vacancy"],
        slot_id=r["slot_id"],
        location_id=r["location_id"],
        modality=r["modality"],
        slot_start=r["slot_start"],
        entry_id=r["entry_id"],
        appointment_id=r["appointment_id"],
        phone_hash=r["phone_hash"],
        state=r["state"],
        hold_until=r["hold_until"],
    )


_SELECT_OFFERS = """
SELECT o.id, o.vacancy, o.slot_id, o.location_id, o.modality, o.slot_start, o.entry_id,
       e.appointment_id, o.phone_hash, o.state, o.hold_until
  FROM waitlist_offers o JOIN waitlist_entries e ON e.id = o.entry_id
"""


def _offers(where: str) -> str:
    return _SELECT_OFFERS + where


_OFFERS_OF_ENTRIES = _offers(
    "WHERE o.entry_id = ANY($1::bigint[]) AND o.state = 'offered' FOR UPDATE OF o"
)
_LIVE_FOR_PHONE = _offers("WHERE o.phone_hash = $1 AND o.state IN ('offered', 'accepting')")
_LIVE_FOR_PHONE_LOCKED = _LIVE_FOR_PHONE + " FOR UPDATE OF o"
_LIVE_OF_ENTRY = _offers("WHERE o.entry_id = $1 AND o.state IN ('offered', 'accepting')")
_ACCEPTING = _offers("WHERE o.state = 'accepting' ORDER BY o.id")
_EXPIRED = _offers(
    """WHERE (o.state = 'offered' AND o.hold_until <= $1)
          OR (o.state = 'accepting' AND o.hold_until <= $2)
       ORDER BY o.hold_until LIMIT $3 FOR UPDATE OF o SKIP LOCKED"""
)


async def join(
    conn: asyncpg.Connection,
    *,
    appointment_id: str,
    location_id: str,
    modality: str,
    phone_hash: str,
    now: datetime,
) -> bool:
    """Put the appointment on the waitlist; False when it already waits."""
    done = await conn.fetchval(
        """
        INSERT INTO waitlist_entries (appointment_id, location_id, modality, phone_hash, joined_at)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT DO NOTHING
        RETURNING id
        """,
        appointment_id,
        location_id,
        modality,
        phone_hash,
        now,
    )
    return done is not None


async def waiting_for_appointments(
    conn: asyncpg.Connection, appointment_ids: list[str]
) -> set[str]:
    rows = await conn.fetch(
        "SELECT appointment_id FROM waitlist_entries"
        " WHERE state = 'waiting' AND appointment_id = ANY($1::text[])",
        appointment_ids,
    )
    return {r["appointment_id"] for r in rows}


async def end_entries(
    conn: asyncpg.Connection,
    *,
    state: EntryEnd,
    now: datetime,
    appointment_ids: list[str] | None = None,
    phone_hash: str | None = None,
    entry_id: int | None = None,
) -> list[int]:
    """End the waiting entries of these appointments / this phone / this entry; their ids."""
    rows = await conn.fetch(
        """
        UPDATE waitlist_entries SET state = $1, ended_at = $2
         WHERE state = 'waiting'
           AND ($3::text[] IS NULL OR appointment_id = ANY($3::text[]))
           AND ($4::text IS NULL OR phone_hash = $4)
           AND ($5::bigint IS NULL OR id = $5)
        RETURNING id
        """,
        state,
        now,
        appointment_ids,
        phone_hash,
        entry_id,
    )
    return [r["id"] for r in rows]


async def close_vacancy_entries(conn: asyncpg.Connection, entry_ids: list[int]) -> list[Offer]:
    """The live ('offered') offers made to these entries, locked: their patients left."""
    rows = await conn.fetch(
        _OFFERS_OF_ENTRIES,
        entry_ids,
    )
    return [_offer(r) for r in rows]


async def waiting_entries(
    conn: asyncpg.Connection,
    *,
    location_id: str,
    modality: str,
    later_than: datetime,
    exclude_vacancy: str,
    limit: int = 50,
) -> list[Entry]:
    """Waiting entries at the place whose appointment starts after ``later_than`` and who were not
    offered ``exclude_vacancy`` before, in order of joining."""
    rows = await conn.fetch(
        """
        SELECT e.id, e.appointment_id, e.location_id, e.modality, e.phone_hash, e.joined_at,
               a.start_at
          FROM waitlist_entries e JOIN appointments a USING (appointment_id)
         WHERE e.state = 'waiting' AND e.location_id = $1 AND e.modality = $2
           AND a.start_at > $3 AND a.status IN ('booked', 'rescheduled')
           AND NOT EXISTS (SELECT 1 FROM waitlist_offers o
                            WHERE o.vacancy = $4 AND o.entry_id = e.id)
         ORDER BY e.joined_at, e.id
         LIMIT $5
        """,
        location_id,
        modality,
        later_than,
        exclude_vacancy,
        limit,
    )
    return [
        Entry(
            r["id"],
            r["appointment_id"],
            r["location_id"],
            r["modality"],
            r["phone_hash"],
            r["joined_at"],
            r["start_at"],
        )
        for r in rows
    ]


async def offered_entries(conn: asyncpg.Connection, vacancy: str) -> list[int]:
    rows = await conn.fetch("SELECT entry_id FROM waitlist_offers WHERE vacancy = $1", vacancy)
    return [r["entry_id"] for r in rows]


async def vacancy_closed(conn: asyncpg.Connection, vacancy: str) -> bool:
    """Taken, refused by the RIS, or still live: no further offer of this vacancy."""
    found = await conn.fetchval(
        "SELECT 1 FROM waitlist_offers WHERE vacancy = $1"
        " AND state IN ('offered', 'accepting', 'taken', 'unavailable') LIMIT 1",
        vacancy,
    )
    return found is not None


async def offer(
    conn: asyncpg.Connection,
    *,
    vacancy: str,
    slot_id: str,
    location_id: str,
    modality: str,
    slot_start: datetime,
    entry: Entry,
    now: datetime,
    hold_until: datetime,
) -> int | None:
    """Record the offer; None when the slot or the phone already has a live one (another
    transaction's claim, waited for by the unique index) or the entry was offered it before."""
    value: int | None = await conn.fetchval(
        """
        INSERT INTO waitlist_offers (vacancy, slot_id, location_id, modality, slot_start, entry_id,
                                     phone_hash, offered_at, hold_until)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT DO NOTHING
        RETURNING id
        """,
        vacancy,
        slot_id,
        location_id,
        modality,
        slot_start,
        entry.id,
        entry.phone_hash,
        now,
        hold_until,
    )
    return value


async def live_offer_for_phone(
    conn: asyncpg.Connection, phone_hash: str, *, for_update: bool = False
) -> Offer | None:
    row = await conn.fetchrow(
        _LIVE_FOR_PHONE_LOCKED if for_update else _LIVE_FOR_PHONE,
        phone_hash,
    )
    return _offer(row) if row is not None else None


async def live_offer_of_entry(conn: asyncpg.Connection, entry_id: int) -> Offer | None:
    row = await conn.fetchrow(
        _LIVE_OF_ENTRY,
        entry_id,
    )
    return _offer(row) if row is not None else None


async def settle_offer(
    conn: asyncpg.Connection, offer_id: int, *, state: OfferState, now: datetime
) -> None:
    await conn.execute(
        "UPDATE waitlist_offers SET state = $2, settled_at = $3 WHERE id = $1", offer_id, state, now
    )


async def claim_expired(
    conn: asyncpg.Connection, *, now: datetime, stale_before: datetime, limit: int
) -> list[Offer]:
    """Offers whose hold ran out without an answer, and 'accepting' ones whose reschedule never came
    back (hold ended before ``stale_before``), locked (another daemon skips them)."""
    rows = await conn.fetch(
        _EXPIRED,
        now,
        stale_before,
        limit,
    )
    return [_offer(r) for r in rows]


async def next_hold_end(db: Database) -> datetime | None:
    """The earliest hold of a live offer (the sweep's timer)."""
    value: datetime | None = await db.fetchval(
        "waitlist.next_hold_end",
        "SELECT min(hold_until) FROM waitlist_offers WHERE state = 'offered'",
    )
    return value


async def entry_of_appointment(conn: asyncpg.Connection, appointment_id: str) -> int | None:
    """The appointment's waiting entry."""
    value: int | None = await conn.fetchval(
        "SELECT id FROM waitlist_entries WHERE appointment_id = $1 AND state = 'waiting'",
        appointment_id,
    )
    return value


async def accepting(conn: asyncpg.Connection) -> list[Offer]:
    """Offers a YES was given to whose reschedule may not have reached the RIS (a restart)."""
    return [_offer(r) for r in await conn.fetch(_ACCEPTING)]
