"""The report's queries: per-modality volumes and outcomes of SMS self-scheduling.

Everything here is metadata (DESIGN.md section 9): counts by modality from ``sms_audit_log`` (texts,
consents, bookings, hand-overs to staff, opt-outs), orders from ``orders``, and the median time from
an order's first audit row to its booking, per conversation (``session_id``).
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


_AUDIT = """
SELECT coalesce(modality, $2) AS modality,
       count(*) FILTER (WHERE direction = 'outbound')                              AS texts_out,
       count(*) FILTER (WHERE direction = 'inbound')                               AS texts_in,
       count(*) FILTER (WHERE message_type = 'consent_granted')                    AS consents,
       count(DISTINCT session_id) FILTER (WHERE message_type = 'booked')           AS bookings,
       count(DISTINCT session_id) FILTER (WHERE message_type = 'deferred')         AS deferred,
       count(*) FILTER (WHERE message_type = 'consent_revoked')                    AS opt_outs
  FROM sms_audit_log
 WHERE occurred_at >= $1
 GROUP BY 1
"""

_ORDERS = "SELECT modality, count(*) AS orders FROM orders WHERE received_at >= $1 GROUP BY 1"

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
    out: list[ModalityReport] = []
    for modality in sorted(set(audit) | set(orders), key=lambda m: (m == NO_MODALITY, m)):
        row = audit.get(modality)

        def n(column: str, row: asyncpg.Record | None = row) -> int:
            return int(row[column]) if row is not None else 0

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
            )
        )
    return out
