"""Retention: the daily job that deletes what the daemon must not keep (DESIGN.md section 9).

What goes, and when (``now`` is the injectable clock; the policy is :class:`RetentionPolicy`):

==========================================  ==========================================================
audit rows (``sms_audit_log``,               older than 2,555 days (7 years)
``config_audit``) and settled
``hl7_outbox`` metadata
sealed PHI of conversations                  once ended or expired, and in any case 24 hours after
                                             creation (``sms_conversations.phi``)
sealed PHI of orders                         24 hours after receipt once the order is settled (booked,
                                             cancelled, ended) or its conversation ended/expired; any
                                             order after ``open_order_days`` (default 30)
delivered message bodies                     ``hl7_outbox`` delivered rows, ``sms_outbox`` sent or
                                             delivered rows (their senders already delete them; this is
                                             the backstop), failed/dead texts after 24 hours
sealed patient identifiers of appointments  one day after the appointment's start, or at its cancel
(``appointments.phi``)                       or deletion (a reschedule moves the day); the record's ids,
                                             times and status stay, like the audit rows (7 years)
appointment reminders                        one day after the appointment's start (``expires_at``); their
(``appointment_reminders``)                  sealed number and location go as soon as a reminder is sent,
                                             skipped or cancelled (a cancel or reschedule cancels them)
dead-lettered SIU bodies                     after ``dead_letter_body_days`` (default 30): long enough to
                                             fix a route and ``radsched outbox retry``
inbound duplicate log (``inbound_messages``,  older than ``DUPLICATE_WINDOW_DAYS`` (default 30): a resend
``sms_inbound``)                             after that is treated as a new message
==========================================  ==========================================================

Several daemons share one database: the job runs under a transaction-level advisory lock and records
its runs in ``maintenance_runs``, so it runs once a day in total, whichever daemon gets there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from radsched.settings import Settings
from radsched.storage.db import Database
from radsched.tasks import spawn

log = logging.getLogger("radsched.retention")

JOB = "retention"
# Two-int4 advisory lock key ("RSE2", 1): singleton maintenance jobs.
LOCK_KEY = (0x52534532, 1)
DAILY = timedelta(hours=24)
CHECK_EVERY_S = 3600.0
FIRST_CHECK_AFTER_S = 300.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    audit_days: int = 2555
    conversation_hours: int = 24
    duplicate_window_days: int = 30
    dead_letter_body_days: int = 30
    open_order_days: int = 30


@dataclass(frozen=True, slots=True)
class PurgeReport:
    ran: bool
    """False when another daemon held the lock (``wait=False``) or the daily run was not due."""
    removed: dict[str, int]
    started_at: datetime


# (name, SQL, intervals): $1 is now, $2... the intervals in order.
def _statements(p: RetentionPolicy) -> list[tuple[str, str, tuple[timedelta, ...]]]:
    audit = timedelta(days=p.audit_days)
    conv = timedelta(hours=p.conversation_hours)
    dup = timedelta(days=p.duplicate_window_days)
    dead = timedelta(days=p.dead_letter_body_days)
    open_orders = timedelta(days=p.open_order_days)
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


async def run_job(
    db: Database,
    now: datetime,
    policy: RetentionPolicy,
    *,
    wait: bool,
    only_if_due: bool,
) -> PurgeReport:
    """Run the purge under the singleton lock.

    ``wait``: block until another daemon's run finishes (``radsched purge``) instead of skipping.
    ``only_if_due``: skip when a run finished less than 24 hours ago (the daily timer).
    """
    async with db.transaction("retention.purge") as conn:
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1::int4, $2::int4)", *LOCK_KEY)
        elif not await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1::int4, $2::int4)", *LOCK_KEY
        ):
            return PurgeReport(False, {}, now)
        if only_if_due:
            last = await conn.fetchval(
                "SELECT finished_at FROM maintenance_runs WHERE job = $1", JOB
            )
            if last is not None and now - last < DAILY:
                return PurgeReport(False, {}, now)
        removed = await purge(conn, now, policy)
        await conn.execute(
            """
            INSERT INTO maintenance_runs (job, started_at, finished_at, result)
            VALUES ($1, $2, $2, $3::jsonb)
            ON CONFLICT (job) DO UPDATE
               SET started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
                   result = EXCLUDED.result
            """,
            JOB,
            now,
            json.dumps(removed),
        )
    log.info("retention purge done", extra={"removed": json.dumps(removed)})
    return PurgeReport(True, removed, now)


def policy_from(duplicate_window_days: int) -> RetentionPolicy:
    return RetentionPolicy(duplicate_window_days=duplicate_window_days)


async def last_run(db: Database) -> datetime | None:
    async with db.transaction("retention.last_run") as conn:
        finished: datetime | None = await conn.fetchval(
            "SELECT finished_at FROM maintenance_runs WHERE job = $1", JOB
        )
    return finished


async def _daily(
    db: Database, clock: Callable[[], datetime], policy: RetentionPolicy, gauge: Gauge
) -> None:
    # Not at start-up: a daemon restarted to fix something should come up fast and quiet, and the job
    # is daily anyway.
    await asyncio.sleep(FIRST_CHECK_AFTER_S)
    while True:
        try:
            await run_job(db, clock(), policy, wait=False, only_if_due=True)
            # Whichever daemon ran it, every daemon reports when it last ran (for the alert).
            finished = await last_run(db)
            if finished is not None:
                gauge.set(finished.timestamp())
        except Exception:
            log.exception("retention purge failed; will try again")
        await asyncio.sleep(CHECK_EVERY_S)


async def start(
    stack: AsyncExitStack,
    *,
    settings: Settings,
    db: Database,
    registry: CollectorRegistry,
    clock: Callable[[], datetime],
) -> None:
    """Start the daily timer: checks hourly, runs when the last run is 24 hours old."""
    policy = policy_from(settings.duplicate_window_days)
    gauge = Gauge(
        "radsched_retention_last_run_timestamp_seconds",
        "When the retention purge last finished (any daemon), Unix time.",
        registry=registry,
    )
    task = spawn(_daily(db, clock, policy, gauge), name="retention")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
