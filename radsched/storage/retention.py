"""The retention job's statements: what the daemon must not keep, deleted (see radsched.retention).

Each statement is named (the name is what ``radsched purge`` prints and ``maintenance_runs`` keeps);
all run in the caller's transaction, under the singleton lock, so several daemons purge once a day
in total.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from radsched.storage import webhook_signatures

__all__ = ["LOCK_KEY", "RetentionPolicy", "finished_at", "lock", "purge", "record_run"]

# Two-int4 advisory lock key ("RSE2", 1): singleton maintenance jobs.
LOCK_KEY = (0x52534532, 1)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    audit_days: int = 2555
    conversation_hours: int = 24
    duplicate_window_days: int = 30
    dead_letter_body_days: int = 30
    open_order_days: int = 30
    # A captured Twilio webhook replays only while its signature verifies, i.e. until the Auth
    # Token that signed it is rotated (or PUBLIC_URL changes); signatures carry no time. A row is
    # worth keeping as long as that token may still be in use: docs/twilio.md asks for a rotation
    # at least yearly, and 400 days is that year plus a month's slack. The rows are 32-byte
    # hashes, no PHI: a year's texts cost a few MB.
    webhook_signature_days: int = 400


# (name, SQL, intervals): $1 is now, $2... the intervals in order.
def _statements(p: RetentionPolicy) -> list[tuple[str, str, tuple[timedelta, ...]]]:
    audit = timedelta(days=p.audit_days)
    conv = timedelta(hours=p.conversation_hours)
    dup = timedelta(days=p.duplicate_window_days)
    dead = timedelta(days=p.dead_letter_body_days)
    open_orders = timedelta(days=p.open_order_days)
    signatures = timedelta(days=p.webhook_signature_days)
    return [
        (
            "sms_audit_log rows",
            "DELETE FROM sms_audit_log WHERE occurred_at < $1::timestamptz - $2::interval",
            (audit,),
        ),
        (
            "config_audit rows",
            "DELETE FROM config_audit WHERE changed_at < $1::timestamptz - $2::interval",
            (audit,),
        ),
        (
            "hl7_outbox rows",
            "DELETE FROM hl7_outbox WHERE state IN ('delivered', 'dead') AND created_at < $1::timestamptz - $2::interval",
            (audit,),
        ),
        (
            "conversation PHI",
            """UPDATE sms_conversations SET phi = NULL
                WHERE phi IS NOT NULL
                  AND (ended_at <= $1 OR expires_at <= $1 OR created_at <= $1::timestamptz - $2::interval)""",
            (conv,),
        ),
        (
            "order PHI",
            """UPDATE orders o SET phi = NULL
                WHERE o.phi IS NOT NULL
                  AND (o.received_at <= $1::timestamptz - $3::interval
                       OR (o.received_at <= $1::timestamptz - $2::interval
                           AND (o.state IN ('booked', 'cancelled', 'ended')
                                OR EXISTS (SELECT 1 FROM sms_conversations c
                                            WHERE c.order_key = o.order_key
                                              AND (c.ended_at <= $1 OR c.expires_at <= $1)))))""",
            (conv, open_orders),
        ),
        (
            "appointment PHI",
            # One day after the start, or at the cancel (then phi_expires_at is the cancel time).
            "UPDATE appointments SET phi = NULL WHERE phi IS NOT NULL AND phi_expires_at <= $1",
            (),
        ),
        (
            "appointment_reminders rows",
            # The start + 1 day (issue 13): the row and any sealed copy a reminder still held.
            "DELETE FROM appointment_reminders WHERE expires_at <= $1",
            (),
        ),
        (
            "waitlist rows",
            # Issue 13 item 5: an entry (and its offers) goes with the appointment's identifiers: one
            # day after the start, or at the cancel. No number is kept in them; the hash goes too.
            """DELETE FROM waitlist_entries w USING appointments a
                WHERE a.appointment_id = w.appointment_id AND a.phi_expires_at <= $1""",
            (),
        ),
        (
            "appointment_events rows",
            "DELETE FROM appointment_events WHERE at < $1::timestamptz - $2::interval",
            (audit,),
        ),
        (
            "appointment_changes rows",
            """DELETE FROM appointment_changes c USING appointments a
                WHERE a.appointment_id = c.appointment_id AND c.state <> 'pending'
                  AND a.start_at < $1::timestamptz - $2::interval""",
            (audit,),
        ),
        (
            "appointments rows",
            """DELETE FROM appointments a
                WHERE a.start_at < $1::timestamptz - $2::interval
                  AND NOT EXISTS (SELECT 1 FROM appointment_changes c
                                   WHERE c.appointment_id = a.appointment_id)
                  AND NOT EXISTS (SELECT 1 FROM appointment_events e
                                   WHERE e.appointment_id = a.appointment_id)""",
            (audit,),
        ),
        (
            "hl7_outbox delivered bodies",
            """UPDATE hl7_outbox SET payload = NULL
                WHERE state = 'delivered' AND payload IS NOT NULL AND delivered_at <= $1""",
            (),
        ),
        (
            "hl7_outbox dead-letter bodies",
            """UPDATE hl7_outbox SET payload = NULL
                WHERE state = 'dead' AND payload IS NOT NULL AND dead_at < $1::timestamptz - $2::interval""",
            (dead,),
        ),
        (
            "sms_outbox sent bodies",
            """UPDATE sms_outbox SET payload = NULL
                WHERE payload IS NOT NULL
                  AND (state IN ('sent', 'delivered')
                       OR (state IN ('failed', 'dead') AND created_at < $1::timestamptz - $2::interval))""",
            (conv,),
        ),
        (
            "inbound_messages rows",
            "DELETE FROM inbound_messages WHERE received_at < $1::timestamptz - $2::interval",
            (dup,),
        ),
        (
            "staff request PHI",
            # The number to answer a request on: gone with the decision, else with the appointment's
            # identifiers, else after the open-order window (a request that names no appointment).
            """UPDATE staff_requests r SET phi = NULL
                WHERE r.phi IS NOT NULL
                  AND (r.created_at < $1::timestamptz - $2::interval
                       OR EXISTS (SELECT 1 FROM appointments a
                                   WHERE a.appointment_id = r.appointment_id
                                     AND (a.phi_expires_at <= $1 OR a.phi IS NULL)))""",
            (open_orders,),
        ),
        ("webhook_signatures rows", webhook_signatures.PRUNE, (signatures,)),
    ]


# Tables of components that may not be installed in this schema: (name, table, SQL).
_OPTIONAL = (
    (
        "sms_inbound rows",
        "sms_inbound",
        "DELETE FROM sms_inbound WHERE received_at < $1::timestamptz - $2::interval",
    ),
)


def _affected(tag: str) -> int:
    last = tag.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def purge(conn: asyncpg.Connection, now: datetime, policy: RetentionPolicy) -> dict[str, int]:
    """Apply the policy on ``conn`` (inside the caller's transaction); return rows affected per item."""
    removed: dict[str, int] = {}
    for name, sql, intervals in _statements(policy):
        removed[name] = _affected(await conn.execute(sql, now, *intervals))
    window = timedelta(days=policy.duplicate_window_days)
    for name, table, sql in _OPTIONAL:
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            removed[name] = _affected(await conn.execute(sql, now, window))
    return removed


async def lock(conn: asyncpg.Connection, *, wait: bool) -> bool:
    """Take the singleton maintenance lock for the caller's transaction; ``wait=False`` gives up
    (False) when another daemon holds it."""
    if wait:
        await conn.execute("SELECT pg_advisory_xact_lock($1::int4, $2::int4)", *LOCK_KEY)
        return True
    got: bool = await conn.fetchval(
        "SELECT pg_try_advisory_xact_lock($1::int4, $2::int4)", *LOCK_KEY
    )
    return got


async def finished_at(conn: asyncpg.Connection, job: str) -> datetime | None:
    """When ``job`` last finished, on any daemon."""
    last: datetime | None = await conn.fetchval(
        "SELECT finished_at FROM maintenance_runs WHERE job = $1", job
    )
    return last


async def record_run(
    conn: asyncpg.Connection, job: str, now: datetime, removed: dict[str, int]
) -> None:
    await conn.execute(
        """
        INSERT INTO maintenance_runs (job, started_at, finished_at, result)
        VALUES ($1, $2, $2, $3::jsonb)
        ON CONFLICT (job) DO UPDATE
           SET started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
               result = EXCLUDED.result
        """,
        job,
        now,
        json.dumps(removed),
    )
