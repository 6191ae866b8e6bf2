"""Per-modality volumes and outcomes of SMS self-scheduling, from the audit log and order metadata.

Everything here is metadata (DESIGN.md section 9): counts by modality from ``sms_audit_log`` (texts,
consents, bookings, hand-overs to staff, opt-outs), orders from ``orders``, and the median time from
an order's first audit row to its booking, per conversation (``session_id``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import asyncpg

__all__ = ["ModalityReport", "build_report", "render_json", "render_table"]

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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    delta = timedelta(seconds=round(seconds))
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


_COLUMNS = (
    ("MODALITY", "modality"),
    ("ORDERS", "orders"),
    ("TEXTS OUT", "texts_out"),
    ("TEXTS IN", "texts_in"),
    ("CONSENTS", "consents"),
    ("BOOKED", "bookings"),
    ("TO STAFF", "deferred"),
    ("OPT-OUTS", "opt_outs"),
    ("MEDIAN TO BOOK", "median_to_book_s"),
)


def render_table(rows: list[ModalityReport], since: datetime) -> str:
    lines = [f"SMS self-scheduling since {since:%Y-%m-%d %H:%M %Z}".rstrip()]
    if not rows:
        return lines[0] + "\n(no orders or texts in this period)\n"

    def total(field: str) -> int:
        return sum(int(getattr(r, field)) for r in rows)

    totals = ModalityReport(
        "TOTAL",
        orders=total("orders"),
        texts_out=total("texts_out"),
        texts_in=total("texts_in"),
        consents=total("consents"),
        bookings=total("bookings"),
        deferred=total("deferred"),
        opt_outs=total("opt_outs"),
        median_to_book_s=None,
    )
    table = [
        [
            _duration(v) if field == "median_to_book_s" else str(v)
            for _, field in _COLUMNS
            for v in [getattr(r, field)]
        ]
        for r in [*rows, totals]
    ]
    table[-1][-1] = ""
    headers = [h for h, _ in _COLUMNS]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    lines += [line(headers), *(line(row) for row in table[:-1]), line(table[-1])]
    return "\n".join(lines) + "\n"


def render_json(rows: list[ModalityReport], since: datetime) -> str:
    return json.dumps(
        {"since": since.isoformat(), "modalities": [asdict(r) for r in rows]}, indent=2
    )
