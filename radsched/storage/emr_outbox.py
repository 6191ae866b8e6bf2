"""SQL of the EMR outbox (``hl7_outbox``): enqueue, claim, settle, statistics, operator actions.

Every function takes a connection the caller owns, so enqueueing joins the booking's (or the inbound
message's) transaction and the sender decides its own transaction boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from radsched.storage import appointments

NOTIFY_CHANNEL = "radsched_hl7_outbox"
"""LISTEN/NOTIFY channel; the payload is a destination name (``*`` wakes every sender)."""

State = str  # 'pending' | 'delivered' | 'dead'


@dataclass(frozen=True, slots=True)
class NewMessage:
    destination: str
    control_id: str
    message_type: str
    payload: bytes | None
    """Sealed (PhiBox) HL7 bytes."""
    facility: str | None
    origin: str
    appointment_id: str
    correlation_id: str
    source_control_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    control_id: str
    message_type: str
    payload: bytes | None
    rejections: int
    next_attempt_at: datetime
    appointment_id: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class LockFence:
    """Identifies a session advisory lock held by our coordinator connection (``pg_locks``)."""

    classid: int
    objid: int
    pid: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    destination: str
    pending: int
    oldest: datetime | None
    dead: int


async def insert(
    conn: asyncpg.Connection, msg: NewMessage, *, now: datetime, dead_reason: str | None = None
) -> int:
    """A pending row, or with ``dead_reason`` a dead letter from the start (no route)."""
    row_id: int = await conn.fetchval(
        """
        INSERT INTO hl7_outbox (destination, control_id, message_type, payload, facility, origin,
                                appointment_id, source_control_id, correlation_id,
                                created_at, next_attempt_at, state, dead_at, last_error)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz, $10::timestamptz,
                CASE WHEN $11::text IS NULL THEN 'pending' ELSE 'dead' END,
                CASE WHEN $11::text IS NULL THEN NULL ELSE $10::timestamptz END, $11)
        RETURNING id
        """,
        msg.destination,
        msg.control_id,
        msg.message_type,
        msg.payload,
        msg.facility,
        msg.origin,
        msg.appointment_id,
        msg.source_control_id,
        msg.correlation_id,
        now,
        dead_reason,
    )
    return row_id


async def notify(conn: asyncpg.Connection, destinations: Iterable[str]) -> None:
    """Wake the senders of ``destinations`` on every daemon, when the caller's transaction commits."""
    for name in sorted(set(destinations)):
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, name)


async def holds_lock(conn: asyncpg.Connection, fence: LockFence) -> bool:
    held: bool = await conn.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_locks
             WHERE locktype = 'advisory' AND classid::bigint = $1 AND objid::bigint = $2
               AND objsubid = 2 AND pid = $3 AND granted)
        """,
        fence.classid,
        fence.objid,
        fence.pid,
    )
    return held


async def claim(conn: asyncpg.Connection, destination: str, limit: int) -> list[Claimed]:
    """The head of the destination's queue, locked, in id order, stopping at the first row someone
    else holds (an operator's ``retry``/``drop`` in progress): skipping it would break FIFO.

    Run it in a transaction of its own (the sender's ``emr.claim``): it turns ``synchronous_commit``
    off for that transaction. The claim changes no row, it only locks the head until the commit, and
    a lock needs no durability (a crash releases every lock anyway); waiting for the WAL flush of the
    lock records was most of the claim's time and all of its tail (issue 16, target 5).
    """
    if not conn.is_in_transaction():
        raise RuntimeError("emr_outbox.claim needs the caller's transaction")
    # One round trip. The head comes from the hl7_outbox_pending index in its own order; the rows
    # are then locked through the primary key only (the outer WHERE names no state, so the planner
    # cannot walk the partial index with a filter, which with a stale estimate of "few pending" it
    # would, over a whole backlog). Each row says its place in the head: a gap is a row someone else
    # holds. A row settled meanwhile comes back locked but not pending and stops the queue likewise.
    # set_config rides along (is_local: this transaction only).
    rows = await conn.fetch(
        """
        WITH head AS MATERIALIZED (
            SELECT array(SELECT id FROM hl7_outbox
                          WHERE destination = $1 AND state = 'pending'
                          ORDER BY id LIMIT $2) AS ids,
                   set_config('synchronous_commit', 'off', true) AS durability
        )
        SELECT o.id, o.state, o.control_id, o.message_type, o.payload, o.rejections,
               o.next_attempt_at, coalesce(o.appointment_id, '') AS appointment_id,
               o.correlation_id, array_position((SELECT ids FROM head), o.id) AS place
          FROM hl7_outbox o
         WHERE o.id = ANY((SELECT ids FROM head)::bigint[])
         ORDER BY o.id
           FOR UPDATE OF o SKIP LOCKED
        """,
        destination,
        limit,
    )
    claimed: list[Claimed] = []
    for place, row in enumerate(rows, start=1):
        if row["place"] != place or row["state"] != "pending":
            break  # the head's row before it is held by someone else, or this one settled meanwhile
        claimed.append(
            Claimed(
                row["id"],
                row["control_id"],
                row["message_type"],
                bytes(row["payload"]) if row["payload"] is not None else None,
                row["rejections"],
                row["next_attempt_at"],
                row["appointment_id"],
                row["correlation_id"],
            )
        )
    return claimed


async def mark_delivered(
    conn: asyncpg.Connection, delivered: Sequence[tuple[int, str, datetime]]
) -> None:
    """``(id, ack code, time)`` per delivered row: body deleted, metadata kept."""
    if not delivered:
        return
    ids, codes, times = zip(*delivered, strict=True)
    await conn.execute(
        """
        UPDATE hl7_outbox o
           SET state = 'delivered', payload = NULL, delivered_at = d.at, ack_code = d.code,
               attempts = o.attempts + 1, last_error = NULL
          FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS d(id, code, at)
         WHERE o.id = d.id AND o.state = 'pending'
        """,
        list(ids),
        list(codes),
        list(times),
    )


async def record_failure(
    conn: asyncpg.Connection,
    row_id: int,
    *,
    error: str,
    next_attempt_at: datetime,
    ack_code: str | None,
    rejected: bool,
) -> None:
    await conn.execute(
        """
        UPDATE hl7_outbox
           SET attempts = attempts + 1, rejections = rejections + $2::int, last_error = $3,
               next_attempt_at = $4, ack_code = coalesce($5, ack_code)
         WHERE id = $1 AND state = 'pending'
        """,
        row_id,
        1 if rejected else 0,
        error,
        next_attempt_at,
        ack_code,
    )


async def dead_letter(
    conn: asyncpg.Connection,
    row_id: int,
    *,
    reason: str,
    now: datetime,
    ack_code: str | None = None,
    count_attempt: bool = True,
    rejected: bool = False,
) -> bool:
    """Move a pending row to the dead letters (body kept so ``outbox retry`` can resend it)."""
    done = await conn.fetchval(
        """
        UPDATE hl7_outbox
           SET state = 'dead', dead_at = $2, last_error = $3, ack_code = coalesce($4, ack_code),
               attempts = attempts + $5::int, rejections = rejections + $6::int
         WHERE id = $1 AND state = 'pending'
        RETURNING id
        """,
        row_id,
        now,
        reason,
        ack_code,
        1 if count_attempt else 0,
        1 if rejected else 0,
    )
    if done is not None:
        # The appointment's later change notifications must not overtake it: held with it.
        await appointments.hold_followers(conn, row_id, now=now)
    return done is not None


async def queue_stats(conn: asyncpg.Connection) -> list[QueueStats]:
    """Per destination: pending count, oldest pending creation time, dead letters (partial indexes)."""
    pending = await conn.fetch(
        """
        SELECT destination, count(*) AS n, min(created_at) AS oldest
          FROM hl7_outbox WHERE state = 'pending' GROUP BY destination
        """
    )
    dead = await conn.fetch(
        "SELECT destination, count(*) AS n FROM hl7_outbox WHERE state = 'dead' GROUP BY destination"
    )
    out: dict[str, QueueStats] = {
        r["destination"]: QueueStats(r["destination"], r["n"], r["oldest"], 0) for r in pending
    }
    for r in dead:
        prev = out.get(r["destination"])
        out[r["destination"]] = QueueStats(
            r["destination"],
            prev.pending if prev else 0,
            prev.oldest if prev else None,
            r["n"],
        )
    return sorted(out.values(), key=lambda s: s.destination)


# --- operator actions (radsched outbox) ---------------------------------------------------------


async def list_rows(
    conn: asyncpg.Connection,
    *,
    destination: str | None,
    state: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
            SELECT id, destination, state, message_type, control_id, facility, origin,
                   appointment_id, attempts, rejections, created_at, next_attempt_at,
                   delivered_at, dead_at, ack_code, last_error, payload IS NOT NULL AS has_body
              FROM hl7_outbox
             WHERE ($1::text IS NULL OR destination = $1)
               AND ($2::text IS NULL OR state = $2)
             ORDER BY id DESC
             LIMIT $3
            """,
            destination,
            state,
            limit,
        )
    )


async def get_row(conn: asyncpg.Connection, row_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        SELECT id, destination, state, control_id, payload IS NOT NULL AS has_body
          FROM hl7_outbox WHERE id = $1 FOR UPDATE
        """,
        row_id,
    )
    return row


async def body(conn: asyncpg.Connection, row_id: int) -> bytes:
    payload: bytes = await conn.fetchval("SELECT payload FROM hl7_outbox WHERE id = $1", row_id)
    return bytes(payload)


async def requeue(conn: asyncpg.Connection, row_id: int, *, now: datetime) -> None:
    """Back to pending, due now, with its original MSH-10; the AE count starts again."""
    await conn.execute(
        """
        UPDATE hl7_outbox
           SET state = 'pending', next_attempt_at = $2, rejections = 0, dead_at = NULL
         WHERE id = $1
        """,
        row_id,
        now,
    )
    await appointments.release_followers(conn, row_id, now=now)


async def drop(conn: asyncpg.Connection, row_id: int, *, now: datetime, reason: str) -> None:
    """Dead-letter for good: the body (PHI) is deleted, so it can no longer be retried."""
    await conn.execute(
        """
        UPDATE hl7_outbox
           SET state = 'dead', payload = NULL, dead_at = coalesce(dead_at, $2), last_error = $3
         WHERE id = $1
        """,
        row_id,
        now,
        reason,
    )


async def reroute(
    conn: asyncpg.Connection, row_id: int, *, destination: str, payload: bytes, now: datetime
) -> None:
    """An unrouted dead letter given a destination by the operator: pending there, due now."""
    await conn.execute(
        """
        UPDATE hl7_outbox
           SET destination = $2, payload = $3, state = 'pending', next_attempt_at = $4,
               rejections = 0, dead_at = NULL, last_error = 'routed by operator from unrouted'
         WHERE id = $1
        """,
        row_id,
        destination,
        payload,
        now,
    )
