"""``staff_requests``: what a person must decide after a patient's reply (issue 13 item 3).

A request names the appointment (none for a reply we could not tie to one), what the patient
asked, and the number to text the decision to, sealed by the caller (PhiBox) and deleted once the
request is decided. Decisions are taken under a row lock, so two operators cannot both decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

__all__ = [
    "Kind",
    "StaffRequest",
    "State",
    "create",
    "decide",
    "decided_recently",
    "get",
    "list_requests",
    "pending_counts",
]

Kind = Literal["cancel", "opted_out", "unclear"]
State = Literal["pending", "approved", "denied"]


@dataclass(frozen=True, slots=True)
class StaffRequest:
    id: int
    appointment_id: str | None
    kind: Kind
    state: State
    phone_hash: str
    phi: bytes | None
    modality: str | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None
    correlation_id: str


def _row(r: asyncpg.Record) -> StaffRequest:
    return StaffRequest(
        id=r["id"],
        appointment_id=r["appointment_id"],
        kind=r["kind"],
        state=r["state"],
        phone_hash=r["phone_hash"],
        phi=bytes(r["phi"]) if r["phi"] is not None else None,
        modality=r["modality"],
        created_at=r["created_at"],
        decided_at=r["decided_at"],
        decided_by=r["decided_by"],
        note=r["note"],
        correlation_id=r["correlation_id"],
    )


async def next_id(conn: asyncpg.Connection) -> int:
    """The id the next request gets (its sealed number is bound to it)."""
    value: int = await conn.fetchval("SELECT nextval('staff_requests_id_seq')")
    return value


async def create(
    conn: asyncpg.Connection,
    request_id: int,
    *,
    appointment_id: str | None,
    kind: Kind,
    phone_hash: str,
    phi: bytes,
    modality: str | None,
    now: datetime,
    correlation_id: str,
) -> bool:
    """False when the appointment already has an open request of this kind (asked once)."""
    done = await conn.fetchval(
        """
        INSERT INTO staff_requests (id, appointment_id, kind, phone_hash, phi, modality, created_at,
                                    correlation_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (appointment_id, kind) WHERE state = 'pending' AND appointment_id IS NOT NULL
        DO NOTHING
        RETURNING 1
        """,
        request_id,
        appointment_id,
        kind,
        phone_hash,
        phi,
        modality,
        now,
        correlation_id[:64],
    )
    return done is not None


_GET = "SELECT * FROM staff_requests WHERE id = $1"
_GET_FOR_UPDATE = "SELECT * FROM staff_requests WHERE id = $1 FOR UPDATE"


async def get(
    conn: asyncpg.Connection, request_id: int, *, for_update: bool = False
) -> StaffRequest | None:
    query = _GET_FOR_UPDATE if for_update else _GET
    record = await conn.fetchrow(query, request_id)
    return _row(record) if record is not None else None


async def list_requests(
    conn: asyncpg.Connection, *, state: State | None, limit: int = 100
) -> list[StaffRequest]:
    """Oldest first: the longest-waiting patient at the top."""
    records = await conn.fetch(
        "SELECT * FROM staff_requests WHERE ($1::text IS NULL OR state = $1) ORDER BY id LIMIT $2",
        state,
        limit,
    )
    return [_row(r) for r in records]


async def decided_recently(conn: asyncpg.Connection, *, limit: int = 50) -> list[StaffRequest]:
    """The latest decisions first (the console's "decided" list)."""
    records = await conn.fetch(
        """
        SELECT * FROM staff_requests WHERE state <> 'pending'
         ORDER BY decided_at DESC NULLS LAST, id DESC LIMIT $1
        """,
        limit,
    )
    return [_row(r) for r in records]


async def decide(
    conn: asyncpg.Connection,
    request_id: int,
    *,
    state: Literal["approved", "denied"],
    by: str,
    note: str | None,
    now: datetime,
) -> None:
    """Record the decision and delete the sealed number (it was needed for the answer only)."""
    await conn.execute(
        """
        UPDATE staff_requests SET state = $2, decided_by = $3, note = $4, decided_at = $5, phi = NULL
         WHERE id = $1
        """,
        request_id,
        state,
        by,
        note,
        now,
    )


async def pending_counts(conn: asyncpg.Connection, *, overdue_before: datetime) -> tuple[int, int]:
    """(pending, of which created before ``overdue_before``)."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS pending, count(*) FILTER (WHERE created_at < $1) AS overdue
          FROM staff_requests WHERE state = 'pending'
        """,
        overdue_before,
    )
    return int(row["pending"]), int(row["overdue"])
