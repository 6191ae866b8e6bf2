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
number to answer a staff request on          with the decision, the appointment's identifiers, or
(``staff_requests.phi``)                     after ``open_order_days``
Twilio webhook signatures seen               older than 400 days: see ``webhook_signature_days``
(``webhook_signatures``, SHA-256 only)
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

from prometheus_client import CollectorRegistry, Gauge

from radsched.settings import Settings
from radsched.storage import retention as store
from radsched.storage.db import Database
from radsched.storage.retention import LOCK_KEY, RetentionPolicy, purge
from radsched.tasks import spawn

log = logging.getLogger("radsched.retention")

__all__ = [
    "LOCK_KEY",
    "PurgeReport",
    "RetentionPolicy",
    "last_run",
    "policy_from",
    "purge",
    "run_job",
    "start",
]

JOB = "retention"
DAILY = timedelta(hours=24)
CHECK_EVERY_S = 3600.0
FIRST_CHECK_AFTER_S = 300.0


@dataclass(frozen=True, slots=True)
class PurgeReport:
    ran: bool
    """False when another daemon held the lock (``wait=False``) or the daily run was not due."""
    removed: dict[str, int]
    started_at: datetime


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
        if not await store.lock(conn, wait=wait):
            return PurgeReport(False, {}, now)
        if only_if_due:
            last = await store.finished_at(conn, JOB)
            if last is not None and now - last < DAILY:
                return PurgeReport(False, {}, now)
        removed = await purge(conn, now, policy)
        await store.record_run(conn, JOB, now, removed)
    log.info("retention purge done", extra={"removed": json.dumps(removed)})
    return PurgeReport(True, removed, now)


def policy_from(duplicate_window_days: int) -> RetentionPolicy:
    return RetentionPolicy(duplicate_window_days=duplicate_window_days)


async def last_run(db: Database) -> datetime | None:
    async with db.transaction("retention.last_run") as conn:
        finished = await store.finished_at(conn, JOB)
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
