"""The report's queries: per-modality volumes and outcomes of SMS self-scheduling.

Everything here is metadata (DESIGN.md section 9): counts by modality from ``sms_audit_log`` (texts,
consents, bookings, hand-overs to staff, opt-outs), orders from ``orders``, and the median time from
an order's first audit row to its booking, per conversation (``session_id``).

After the booking (issue 13 item 7): reminders queued (``sms_audit_log`` rows ``reminder``: the
reminder rows themselves are deleted a day after the start), appointments the patient confirmed by
replying 1 (``appointments.confirmed_at`` in the period), staff requests raised in the period by kind
and state (``staff_requests``), and the RIS's cancels (SIU^S15/S17, ORM cancel), moves (SIU^S13) and
no-shows (SIU^S26, or S14 with SCH-25 Noshow) of appointments booked by text (``appointment_events``
of origin ``ris``). Replies 2 (change) and the waitlist have nothing to count yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

NO_MODALITY = "-"  # texts from numbers without a conversation (a STOP after the end, …)


@dataclass(frozen=True, slots=True)
class ModalityReport:
    modality: str
    orders: int
    texts_out: int
    texts_in: int
    consents: int
    bookings: int
    deferred: int
    opt_outs: int
    median_to_book_s: float | None
    # After the booking: see the module's docstring for what each counts.
    reminders_sent: int = 0
    confirmed: int = 0
    cancel_requests: int = 0
    cancel_requests_approved: int = 0
    cancel_requests_denied: int = 0
    cancel_requests_pending: int = 0
    other_requests: int = 0
    """Staff requests that are not a reply 3: "opted out; may want to cancel", and unclear replies."""
    ris_cancels: int = 0
    ris_moves: int = 0
    noshows: int = 0
    changed: int = 0
    """Appointments the patient moved by text (reply 2)."""
    waitlist_joins: int = 0
    waitlist_offers: int = 0
    waitlist_fills: int = 0


AFTER_BOOKING = (
    "reminders_sent",
    "confirmed",
    "cancel_requests",
    "cancel_requests_approved",
    "cancel_requests_denied",
    "cancel_requests_pending",
    "other_requests",
    "ris_cancels",
    "ris_moves",
    "noshows",
    "changed",
    "waitlist_joins",
    "waitlist_offers",
    "waitlist_fills",
)
# The after-booking figures counted from the audit log (the rest come from their tables).
_FROM_AUDIT = ("reminders_sent", "changed", "waitlist_joins", "waitlist_offers", "waitlist_fills")


_AUDIT = """
SELECT coalesce(modality, $2) AS modality,
       count(*) FILTER (WHERE direction = 'outbound')                              AS texts_out,
       count(*) FILTER (WHERE direction = 'inbound')                               AS texts_in,
       count(*) FILTER (WHERE message_type = 'consent_granted')                    AS consents,
       count(DISTINCT session_id) FILTER (WHERE message_type = 'booked')           AS bookings,
       count(DISTINCT session_id) FILTER (WHERE message_type = 'deferred')         AS deferred,
       count(*) FILTER (WHERE message_type = 'consent_revoked')                    AS opt_outs,
       count(*) FILTER (WHERE message_type = 'reminder')                           AS reminders_sent,
       -- decisions are 'system' rows; a template of the same name is the 'outbound' text
       count(*) FILTER (WHERE message_type = 'rescheduled' AND direction = 'system')     AS changed,
       count(*) FILTER (WHERE message_type = 'waitlist_joined' AND direction = 'system') AS waitlist_joins,
       count(*) FILTER (WHERE message_type = 'waitlist_offer' AND direction = 'outbound') AS waitlist_offers,
       count(*) FILTER (WHERE message_type = 'waitlist_filled' AND direction = 'system') AS waitlist_fills
  FROM sms_audit_log
 WHERE occurred_at >= $1
 GROUP BY 1
"""

_ORDERS = "SELECT modality, count(*) AS orders FROM orders WHERE received_at >= $1 GROUP BY 1"

_CONFIRMED = """
SELECT modality, count(*) AS confirmed
  FROM appointments
 WHERE confirmed_at >= $1
 GROUP BY 1
"""

_REQUESTS = """
SELECT coalesce(modality, $2) AS modality,
       count(*) FILTER (WHERE kind = 'cancel')                        AS cancel_requests,
       count(*) FILTER (WHERE kind = 'cancel' AND state = 'approved') AS cancel_requests_approved,
       count(*) FILTER (WHERE kind = 'cancel' AND state = 'denied')   AS cancel_requests_denied,
       count(*) FILTER (WHERE kind = 'cancel' AND state = 'pending')  AS cancel_requests_pending,
       count(*) FILTER (WHERE kind <> 'cancel')                       AS other_requests
  FROM staff_requests
 WHERE created_at >= $1
 GROUP BY 1
"""

# Changes the RIS made to appointments booked by text (each cancel or move is what the patient was
# texted about), and the no-shows it told us of (one event per appointment and start).
_RIS_CHANGES = """
SELECT a.modality,
       count(*) FILTER (WHERE e.kind IN ('cancelled', 'deleted')) AS ris_cancels,
       count(*) FILTER (WHERE e.kind = 'rescheduled')             AS ris_moves,
       count(*) FILTER (WHERE e.kind = 'noshow')                  AS noshows
  FROM appointment_events e
  JOIN appointments a USING (appointment_id)
 WHERE e.origin = 'ris' AND a.origin = 'sms' AND e.at >= $1
   AND e.kind IN ('cancelled', 'deleted', 'rescheduled', 'noshow')
 GROUP BY 1
"""

# Time to book: from the conversation's first audit row (the order arriving) to its 'booked' row.
_MEDIAN = """
WITH booked AS (
    SELECT session_id, min(occurred_at) AS at
      FROM sms_audit_log
     WHERE message_type = 'booked' AND occurred_at >= $1 AND session_id IS NOT NULL
     GROUP BY session_id
), started AS (
    SELECT session_id, min(occurred_at) AS at, max(modality) AS modality
      FROM sms_audit_log
     WHERE session_id IN (SELECT session_id FROM booked)
     GROUP BY session_id
)
SELECT coalesce(s.modality, $2) AS modality,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.at - s.at)) AS median_s
  FROM booked b JOIN started s USING (session_id)
 GROUP BY 1
"""


async def build_report(conn: asyncpg.Connection, since: datetime) -> list[ModalityReport]:
    audit = {r["modality"]: r for r in await conn.fetch(_AUDIT, since, NO_MODALITY)}
    orders = {r["modality"]: r["orders"] for r in await conn.fetch(_ORDERS, since)}
    medians = {r["modality"]: r["median_s"] for r in await conn.fetch(_MEDIAN, since, NO_MODALITY)}
    after: dict[str, dict[str, int]] = {}
    for query, args in (
        (_CONFIRMED, (since,)),
        (_REQUESTS, (since, NO_MODALITY)),
        (_RIS_CHANGES, (since,)),
    ):
        for r in await conn.fetch(query, *args):
            counts = after.setdefault(r["modality"], {})
            counts.update({k: int(v) for k, v in r.items() if k != "modality"})
    out: list[ModalityReport] = []
    modalities = set(audit) | set(orders) | set(after)
    for modality in sorted(modalities, key=lambda m: (m == NO_MODALITY, m)):
        row = audit.get(modality)

        def n(column: str, row: asyncpg.Record | None = row) -> int:
            return int(row[column]) if row is not None else 0

        later = after.get(modality, {})

        median = medians.get(modality)
        out.append(
            ModalityReport(
                modality,
                int(orders.get(modality, 0)),
                n("texts_out"),
                n("texts_in"),
                n("consents"),
                n("bookings"),
                n("deferred"),
                n("opt_outs"),
                float(median) if median is not None else None,
                **{k: n(k) for k in _FROM_AUDIT},
                **{k: later.get(k, 0) for k in AFTER_BOOKING if k not in _FROM_AUDIT},
            )
        )
    return out
