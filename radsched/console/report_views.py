"""The funnel: per modality and day or week, orders → consent → booked, deferred by reason, opted out,
median time to book; a server-rendered SVG chart, a table (what a screen reader reads) and a CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape

from aiohttp import web
from markupsafe import Markup

from radsched.console.app import deps, page
from radsched.storage import console as store
from radsched.storage.console import Bucket, FunnelRow

SERIES = (
    ("orders", "Orders", "#9bb8d3"),
    ("consents", "Consent", "#4a7fb0"),
    ("booked", "Booked", "#1d4f7a"),
)


def _window(request: web.Request) -> tuple[Bucket, int, str | None]:
    bucket: Bucket = "week" if request.query.get("bucket") == "week" else "day"
    default = 84 if bucket == "week" else 30
    try:
        days = min(730, max(1, int(request.query.get("days", default))))
    except ValueError:
        days = default
    modality = (request.query.get("modality") or "").strip().upper() or None
    return bucket, days, modality


async def _rows(request: web.Request) -> tuple[list[FunnelRow], Bucket, int, str | None]:
    d = deps(request)
    bucket, days, modality = _window(request)
    until = d.clock().astimezone(UTC) + timedelta(seconds=1)
    since = until - timedelta(days=days)
    async with d.db.transaction("console.funnel") as conn:
        rows = await store.funnel(conn, since, until, bucket=bucket, tz=d.timezone)
    if modality:
        rows = [r for r in rows if r.modality == modality]
    return rows, bucket, days, modality


def _by_period(rows: Sequence[FunnelRow]) -> list[tuple[datetime, dict[str, int]]]:
    sums: dict[datetime, dict[str, int]] = {}
    for r in rows:
        cell = sums.setdefault(r.period, {"orders": 0, "consents": 0, "booked": 0})
        cell["orders"] += r.orders
        cell["consents"] += r.consents
        cell["booked"] += r.booked
    return sorted(sums.items())


def chart_svg(rows: Sequence[FunnelRow], bucket: Bucket) -> Markup:
    """Grouped bars per period. Plain SVG attributes, no inline style (the CSP forbids it)."""
    periods = _by_period(rows)
    width, height, left, bottom, top = 720, 240, 40, 40, 16
    if not periods:
        return Markup('<p class="empty">No orders in this period yet.</p>')
    peak = max(max(c.values()) for _, c in periods) or 1
    slot = (width - left - 8) / len(periods)
    bar = max(2.0, min(18.0, slot / (len(SERIES) + 1)))
    plot_h = height - bottom - top
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">Orders, consents and bookings per {bucket}</title>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" '
        'stroke="#555"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    label_every = max(1, len(periods) // 10)
    for i, (period, cell) in enumerate(periods):
        x0 = left + i * slot + bar / 2
        for j, (key, label, colour) in enumerate(SERIES):
            h = plot_h * cell[key] / peak
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 1:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)} {period:%Y-%m-%d}: '
                f"{cell[key]}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x0:.1f}" y="{height - bottom + 16}" font-size="11">'
                f"{period:%m-%d}</text>"
            )
    for j, (_, label, colour) in enumerate(SERIES):
        x = left + j * 110
        parts.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{height - 5}" font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    # Safe: every interpolated value above is a number, a date or passed through escape().
    return Markup("".join(parts))  # noqa: S704


def _median(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{rest:02d}s"


async def funnel(request: web.Request) -> web.StreamResponse:
    rows, bucket, days, modality = await _rows(request)
    return page(
        request,
        "funnel.html",
        {
            "title": "Funnel",
            "rows": rows,
            "chart": chart_svg(rows, bucket),
            "bucket": bucket,
            "days": days,
            "modality": modality or "",
            "median": _median,
        },
    )


CSV_COLUMNS = (
    "period",
    "modality",
    "orders",
    "consents",
    "booked",
    "deferred",
    "opted_out",
    "median_to_book_s",
    "deferred_by_reason",
)


async def funnel_csv(request: web.Request) -> web.StreamResponse:
    rows, bucket, days, _ = await _rows(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                f"{r.period:%Y-%m-%d}",
                r.modality,
                r.orders,
                r.consents,
                r.booked,
                r.deferred,
                r.opted_out,
                "" if r.median_to_book_s is None else round(r.median_to_book_s),
                ";".join(f"{k}={v}" for k, v in sorted(r.deferred_by_reason.items())),
            ]
        )
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="funnel-{bucket}-{days}d.csv"'},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/funnel", funnel)
    app.router.add_get("/funnel.csv", funnel_csv)
