"""``radsched report [--since DATE] [--json]``: per-modality volumes and outcomes from the audit log."""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from radsched.settings import Settings

__all__ = ["parse_since", "register"]

DEFAULT_DAYS = 30


def parse_since(text: str | None, tz: ZoneInfo, now: datetime) -> datetime:
    """``YYYY-MM-DD`` (local midnight in TIMEZONE) or an ISO 8601 time; default 30 days ago."""
    if not text:
        return now - timedelta(days=DEFAULT_DAYS)
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").date()
            return datetime.combine(day, time(0), tz)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since: expected YYYY-MM-DD or an ISO 8601 time, got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _run(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    async def go(settings: Settings) -> int:
        from radsched.report import build_report, render_json, render_table
        from radsched.storage.connect import storage

        tz = ZoneInfo(settings.timezone)
        try:
            since = parse_since(args.since, tz, datetime.now(UTC))
        except argparse.ArgumentTypeError as exc:
            print(f"radsched report: {exc}")
            return 2
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(storage(settings, stack, None, owner=False))
            async with store.db.transaction("cli.report") as conn:
                rows = await build_report(conn, since)
        local = since.astimezone(tz)
        print(render_json(rows, local) if args.json else render_table(rows, local), end="")
        return 0

    return run_async(go)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="per-modality orders, texts, consents, bookings and opt-outs"
    )
    parser.add_argument(
        "--since", metavar="DATE", help="YYYY-MM-DD (local) or ISO time; default 30 days ago"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=_run)
