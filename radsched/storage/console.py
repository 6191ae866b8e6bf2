"""SQL of the admin console (``sql/0009_console.sql``): users, sessions, the console audit, and the
read-only listings its pages show (message log, deferred orders, funnel).

Every function takes a connection the caller owns. Listings select metadata columns only: no body,
no ``phi`` column leaves this module except the sealed order blob the deferred-orders page opens for
operators (and audits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    password_hash: str
    must_change: bool
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    target: str | None = None
    old_value: str | None = None
    new_value: str | None = None
    note: str | None = None
    address: str | None = None


def _user(row: asyncpg.Record) -> User:
    return User(
        row["id"],
        row["name"],
        row["role"],
        row["password_hash"],
        row["must_change"],
        row["created_at"],
        row["disabled_at"],
    )


# --- users -------------------------------------------------------------------------------------


async def count_users(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM console_users"))


async def lock_first_admin(conn: asyncpg.Connection) -> None:
    """Serialise first starts of several daemons on one database for the caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('console:first-admin', 0))")


async def create_user(
    conn: asyncpg.Connection,
    name: str,
    role: Role,
    password_hash: str,
    *,
    must_change: bool,
    now: datetime,
) -> User:
    """Raises ``asyncpg.UniqueViolationError`` when the name is taken."""
    row = await conn.fetchrow(
        """
        INSERT INTO console_users (name, role, password_hash, must_change, created_at)
        VALUES ($1, $2, $3, $4, $5) RETURNING *
        """,
        name,
        role,
        password_hash,
        must_change,
        now,
    )
    assert row is not None
    return _user(row)


async def user_by_name(conn: asyncpg.Connection, name: str) -> User | None:
    row = await conn.fetchrow("SELECT * FROM console_users WHERE name = $1", name)
    return _user(row) if row is not None else None


async def list_users(conn: asyncpg.Connection) -> list[User]:
    return [_user(r) for r in await conn.fetch("SELECT * FROM console_users ORDER BY name")]


async def set_password(
    conn: asyncpg.Connection, user_id: int, password_hash: str, *, must_change: bool, now: datetime
) -> None:
    await conn.execute(
        """
        UPDATE console_users SET password_hash = $2, must_change = $3, password_changed_at = $4
         WHERE id = $1
        """,
        user_id,
        password_hash,
        must_change,
        now,
    )


async def disable_user(conn: asyncpg.Connection, name: str, *, now: datetime) -> User | None:
    """Disable and end every live session of ``name``; None when there is no such user."""
    row = await conn.fetchrow(
        """
        UPDATE console_users SET disabled_at = coalesce(disabled_at, $2) WHERE name = $1
        RETURNING *
        """,
        name,
        now,
    )
    if row is None:
        return None
    await conn.execute(
        """
        UPDATE console_sessions SET ended_at = $2, end_reason = 'user disabled'
         WHERE user_id = $1 AND ended_at IS NULL
        """,
        row["id"],
        now,
    )
    return _user(row)


# --- sessions ----------------------------------------------------------------------------------


async def start_session(
    conn: asyncpg.Connection, session_id: str, user_id: int, *, now: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO console_sessions (id, user_id, created_at, last_seen_at) VALUES ($1, $2, $3, $3)
        """,
        session_id,
        user_id,
        now,
    )


async def live_session_user(
    conn: asyncpg.Connection, session_id: str, *, now: datetime, touch_after_s: float
) -> User | None:
    """The user of a session that has not ended and whose user is enabled; refreshes last_seen_at
    when older than ``touch_after_s`` (so every page view is not a write)."""
    row = await conn.fetchrow(
        """
        SELECT u.*, s.last_seen_at FROM console_sessions s JOIN console_users u ON u.id = s.user_id
         WHERE s.id = $1 AND s.ended_at IS NULL AND u.disabled_at IS NULL
        """,
        session_id,
    )
    if row is None:
        return None
    if (now - row["last_seen_at"]).total_seconds() > touch_after_s:
        await conn.execute(
            "UPDATE console_sessions SET last_seen_at = $2 WHERE id = $1", session_id, now
        )
    return _user(row)


async def end_session(
    conn: asyncpg.Connection, session_id: str, *, now: datetime, reason: str
) -> None:
    await conn.execute(
        """
        UPDATE console_sessions SET ended_at = $2, end_reason = $3
         WHERE id = $1 AND ended_at IS NULL
        """,
        session_id,
        now,
        reason,
    )


# --- audit -------------------------------------------------------------------------------------


async def audit(conn: asyncpg.Connection, entry: AuditEntry, *, now: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO console_audit (occurred_at, actor, address, action, target, old_value,
                                   new_value, note)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        now,
        entry.actor,
        entry.address,
        entry.action,
        entry.target,
        entry.old_value,
        entry.new_value,
        entry.note,
    )


async def audit_page(
    conn: asyncpg.Connection, *, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated by id (``console_audit_occurred_at`` serves the order)."""
    return list(
        await conn.fetch(
            """
            SELECT id, occurred_at, actor, address, action, target, old_value, new_value, note
              FROM console_audit
             WHERE $1::bigint IS NULL OR id < $1
             ORDER BY occurred_at DESC, id DESC
             LIMIT $2
            """,
            before_id,
            limit,
        )
    )


async def config_changes(conn: asyncpg.Connection, *, limit: int) -> list[asyncpg.Record]:
    """Latest modality switches from any writer (CLI or console), for the modalities page."""
    return list(
        await conn.fetch(
            """
            SELECT DISTINCT ON (item) item, changed_at, changed_by, old_value, new_value, note
              FROM config_audit WHERE item LIKE 'modality:%'
             ORDER BY item, changed_at DESC, id DESC
             LIMIT $1
            """,
            limit,
        )
    )


# --- message log -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageFilter:
    control_id: str | None = None
    message_type: str | None = None
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None


_INBOUND = """
SELECT 'in' AS direction, id, received_at AS at, sender AS peer, control_id, message_type,
       ack_code AS code, NULL::text AS error
  FROM inbound_messages
 WHERE ($1::text IS NULL OR control_id = $1)
   AND ($2::text IS NULL OR message_type = $2)
   AND ($3::text IS NULL OR ack_code = $3)
   AND ($4::timestamptz IS NULL OR received_at >= $4)
   AND ($5::timestamptz IS NULL OR received_at < $5)
 ORDER BY received_at DESC, id DESC
 LIMIT $6 OFFSET $7
"""

_OUTBOUND = """
SELECT 'out' AS direction, id, created_at AS at, destination AS peer, control_id, message_type,
       coalesce(ack_code, state) AS code, last_error AS error
  FROM hl7_outbox
 WHERE ($1::text IS NULL OR control_id = $1)
   AND ($2::text IS NULL OR message_type = $2)
   AND ($3::text IS NULL OR ack_code = $3 OR state = $3)
   AND ($4::timestamptz IS NULL OR created_at >= $4)
   AND ($5::timestamptz IS NULL OR created_at < $5)
 ORDER BY created_at DESC, id DESC
 LIMIT $6 OFFSET $7
"""


async def message_log(
    conn: asyncpg.Connection,
    flt: MessageFilter,
    *,
    direction: Literal["in", "out"],
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """One page of one direction's HL7 metadata, newest first. Never a payload column."""
    query = _INBOUND if direction == "in" else _OUTBOUND
    return list(
        await conn.fetch(
            query,
            flt.control_id,
            flt.message_type,
            flt.code,
            flt.since,
            flt.until,
            limit,
            offset,
        )
    )


# --- overview ----------------------------------------------------------------------------------


async def sms_queue(conn: asyncpg.Connection) -> asyncpg.Record:
    """Texts waiting to go out (pending or sending) and the age of the oldest (index ``sms_outbox_waiting``)."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS waiting, min(created_at) AS oldest, count(*) FILTER (WHERE state = 'sending')
               AS sending
          FROM sms_outbox WHERE state IN ('pending', 'sending')
        """
    )
    assert row is not None
    return row


async def last_sms_error(conn: asyncpg.Connection) -> str | None:
    value = await conn.fetchval(
        """
        SELECT last_error FROM sms_outbox
         WHERE state IN ('pending', 'sending') AND last_error IS NOT NULL
         ORDER BY created_at DESC LIMIT 1
        """
    )
    return str(value) if value is not None else None


async def last_outbox_errors(conn: asyncpg.Connection) -> dict[str, str]:
    """Per destination, the last error of its newest undelivered row (partial indexes on state)."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (destination) destination, last_error
          FROM hl7_outbox WHERE state IN ('pending', 'dead') AND last_error IS NOT NULL
         ORDER BY destination, id DESC
        """
    )
    return {r["destination"]: r["last_error"] for r in rows}


async def outbox_row(conn: asyncpg.Connection, row_id: int) -> asyncpg.Record | None:
    """One ``hl7_outbox`` row's metadata, for the confirmation page (no body, no lock)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        SELECT id, destination, state, message_type, control_id, appointment_id, attempts,
               last_error, payload IS NOT NULL AS has_body
          FROM hl7_outbox WHERE id = $1
        """,
        row_id,
    )
    return row


# --- deferred orders ---------------------------------------------------------------------------


async def deferred_orders(
    conn: asyncpg.Connection, *, limit: int, offset: int
) -> list[asyncpg.Record]:
    """Orders handed to staff, oldest first (index ``orders_deferred``). ``phi`` is the sealed
    order; the caller opens it only for an operator and audits the view."""
    return list(
        await conn.fetch(
            """
            SELECT id, order_key, modality, facility, deferred_reason, received_at, updated_at, phi
              FROM orders WHERE state = 'deferred'
             ORDER BY updated_at, id
             LIMIT $1 OFFSET $2
            """,
            limit,
            offset,
        )
    )


# --- funnel ------------------------------------------------------------------------------------

Bucket = Literal["day", "week"]


@dataclass(frozen=True, slots=True)
class FunnelRow:
    period: datetime
    modality: str
    orders: int
    consents: int
    booked: int
    deferred: int
    opted_out: int
    median_to_book_s: float | None
    deferred_by_reason: dict[str, int]


_FUNNEL_AUDIT = """
SELECT date_trunc($3, occurred_at AT TIME ZONE $4) AS period, coalesce(modality, '-') AS modality,
       count(*) FILTER (WHERE message_type = 'consent_granted')                    AS consents,
       count(DISTINCT session_id) FILTER (WHERE message_type = 'booked')           AS booked,
       count(*) FILTER (WHERE message_type = 'consent_revoked')                    AS opted_out
  FROM sms_audit_log
 WHERE occurred_at >= $1 AND occurred_at < $2
 GROUP BY 1, 2
"""

_FUNNEL_ORDERS = """
SELECT date_trunc($3, received_at AT TIME ZONE $4) AS period, modality,
       count(*) AS orders,
       count(*) FILTER (WHERE state = 'deferred' OR deferred_reason IS NOT NULL) AS deferred,
       coalesce(deferred_reason, '') AS reason
  FROM orders
 WHERE received_at >= $1 AND received_at < $2
 GROUP BY 1, 2, 5
"""

_FUNNEL_MEDIAN = """
WITH booked AS (
    SELECT session_id, min(occurred_at) AS at
      FROM sms_audit_log
     WHERE message_type = 'booked' AND occurred_at >= $1 AND occurred_at < $2
       AND session_id IS NOT NULL
     GROUP BY session_id
), started AS (
    SELECT session_id, min(occurred_at) AS at, max(modality) AS modality
      FROM sms_audit_log
     WHERE session_id IN (SELECT session_id FROM booked)
       AND session_id IS NOT NULL  -- lets the planner use the partial index sms_audit_log_session
     GROUP BY session_id
)
SELECT date_trunc($3, b.at AT TIME ZONE $4) AS period, coalesce(s.modality, '-') AS modality,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.at - s.at)) AS median_s
  FROM booked b JOIN started s USING (session_id)
 GROUP BY 1, 2
"""


async def funnel(
    conn: asyncpg.Connection, since: datetime, until: datetime, *, bucket: Bucket, tz: str
) -> list[FunnelRow]:
    """Per period (local ``tz``) and modality; the counts are those of ``radsched report``."""
    args = (since, until, bucket, tz)
    audit_rows = {(r["period"], r["modality"]): r for r in await conn.fetch(_FUNNEL_AUDIT, *args)}
    medians = {
        (r["period"], r["modality"]): r["median_s"] for r in await conn.fetch(_FUNNEL_MEDIAN, *args)
    }
    orders: dict[tuple[datetime, str], int] = {}
    deferred: dict[tuple[datetime, str], dict[str, int]] = {}
    for r in await conn.fetch(_FUNNEL_ORDERS, *args):
        key = (r["period"], r["modality"])
        orders[key] = orders.get(key, 0) + int(r["orders"])
        if r["deferred"]:
            reasons = deferred.setdefault(key, {})
            reasons[r["reason"] or "unspecified"] = int(r["deferred"])
    out: list[FunnelRow] = []
    for key in sorted(set(audit_rows) | set(orders)):
        row = audit_rows.get(key)
        reasons = deferred.get(key, {})
        median = medians.get(key)
        out.append(
            FunnelRow(
                period=key[0],
                modality=key[1],
                orders=orders.get(key, 0),
                consents=int(row["consents"]) if row else 0,
                booked=int(row["booked"]) if row else 0,
                deferred=sum(reasons.values()),
                opted_out=int(row["opted_out"]) if row else 0,
                median_to_book_s=float(median) if median is not None else None,
                deferred_by_reason=reasons,
            )
        )
    return out


async def explain(conn: asyncpg.Connection, query: str, *args: object) -> str:
    """EXPLAIN of a query with its arguments (tests and the bench check listings use an index)."""
    rows: Sequence[asyncpg.Record] = await conn.fetch("EXPLAIN " + query, *args)
    return "\n".join(r[0] for r in rows)
