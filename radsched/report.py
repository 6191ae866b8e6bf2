"""``radsched report``: per-modality volumes and outcomes of SMS self-scheduling, as a table or JSON.

The counting is SQL and lives in :mod:`radsched.storage.reports`; this module renders it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta

from radsched.storage.reports import AFTER_BOOKING, NO_MODALITY, ModalityReport, build_report

__all__ = ["NO_MODALITY", "ModalityReport", "build_report", "render_json", "render_table"]


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
# The second table, "After booking" (issue 13 item 7): the first one is wide enough already.
_AFTER_COLUMNS = (
    ("MODALITY", "modality"),
    ("REMINDERS", "reminders_sent"),
    ("CONFIRMED", "confirmed"),
    ("CANCEL REQ", "cancel_requests"),
    ("APPROVED", "cancel_requests_approved"),
    ("DENIED", "cancel_requests_denied"),
    ("PENDING", "cancel_requests_pending"),
    ("OTHER REQ", "other_requests"),
    ("RIS CANCELS", "ris_cancels"),
    ("RIS MOVES", "ris_moves"),
    ("NO-SHOWS", "noshows"),
    ("CHANGED", "changed"),
    ("W JOINS", "waitlist_joins"),
    ("W OFFERS", "waitlist_offers"),
    ("W FILLS", "waitlist_fills"),
)
_COUNTED = [f for _, f in _COLUMNS[1:-1]] + list(AFTER_BOOKING)


def _grid(columns: tuple[tuple[str, str], ...], rows: list[ModalityReport]) -> list[str]:
    """A right-aligned text table of ``columns`` (the first left-aligned), the last row a total."""
    table = [
        [
            str(v) if field != "median_to_book_s" else "" if r is rows[-1] else _duration(v)
            for _, field in columns
            for v in [getattr(r, field)]
        ]
        for r in rows
    ]
    headers = [h for h, _ in columns]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    return [line(headers), *(line(row) for row in table)]


def render_table(rows: list[ModalityReport], since: datetime) -> str:
    lines = [f"SMS self-scheduling since {since:%Y-%m-%d %H:%M %Z}".rstrip()]
    if not rows:
        return lines[0] + "\n(no orders or texts in this period)\n"
    totals = ModalityReport(
        "TOTAL",
        **{field: sum(int(getattr(r, field)) for r in rows) for field in _COUNTED},
        median_to_book_s=None,
    )
    lines += _grid(_COLUMNS, [*rows, totals])
    after = [r for r in rows if any(getattr(r, f) for f in AFTER_BOOKING)]
    if after:
        lines += ["", "After booking", *_grid(_AFTER_COLUMNS, [*after, totals])]
    return "\n".join(lines) + "\n"


def render_json(rows: list[ModalityReport], since: datetime) -> str:
    return json.dumps(
        {"since": since.isoformat(), "modalities": [asdict(r) for r in rows]}, indent=2
    )
