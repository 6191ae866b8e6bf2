"""``radsched report``: per-modality volumes and outcomes of SMS self-scheduling, as a table or JSON.

The counting is SQL and lives in :mod:`radsched.storage.reports`; this module renders it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta

from radsched.storage.reports import NO_MODALITY, ModalityReport, build_report

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
