"""``radsched shadow report [--since DATE] [--json]``: what a parallel run found, by kind.

Reads ``shadow_mismatches`` (written by a gateway with ``SHADOW_URL`` set): per kind the count, when it
was first and last seen, and the latest examples — ids and calendar facts only.
"""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from radsched.commands.report import parse_since
from radsched.settings import Settings

if TYPE_CHECKING:
    from radsched.beside.shadow import Mismatch
    from radsched.storage.shadow import KindSummary

__all__ = ["register", "render_json", "render_table"]


def _when(moment: datetime | None, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _example(m: Mismatch, tz: tzinfo) -> str:
    parts = [m.call, m.modality, m.location_id or "-"]
    if m.slot_start:
        parts.append(_when(m.slot_start, tz))
    parts.append(f"here={m.here_id or '-'} shadow={m.shadow_id or '-'}")
    if m.detail:
        parts.append(m.detail)
    return " ".join(parts)


def render_table(rows: list[KindSummary], since: datetime, tz: tzinfo) -> str:
    lines = [f"shadow mismatches since {since.astimezone(tz).isoformat(timespec='minutes')}"]
    if not rows:
        lines.append("none: every compared answer agreed (or nothing was compared yet)")
        return "\n".join(lines) + "\n"
    lines.append(f"{'kind':<24}{'count':>7}  {'first seen':<17} {'last seen':<17}")
    for row in rows:
        lines.append(
            f"{row.kind:<24}{row.count:>7}  {_when(row.first_seen, tz):<17} "
            f"{_when(row.last_seen, tz):<17}"
        )
        lines.extend(f"    e.g. {_example(m, tz)}" for m in row.examples)
    return "\n".join(lines) + "\n"


def render_json(rows: list[KindSummary], since: datetime) -> str:
    def example(m: Mismatch) -> dict[str, Any]:
        return {
            "call": m.call,
            "modality": m.modality,
            "location": m.location_id,
            "slot_start": m.slot_start.isoformat() if m.slot_start else None,
            "here_id": m.here_id,
            "shadow_id": m.shadow_id,
            "detail": m.detail,
        }

    doc = {
        "since": since.isoformat(),
        "kinds": [
            {
                "kind": r.kind,
                "count": r.count,
                "first_seen": r.first_seen.isoformat(),
                "last_seen": r.last_seen.isoformat(),
                "examples": [example(m) for m in r.examples],
            }
            for r in rows
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def _report(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    async def go(settings: Settings) -> int:
        from radsched.storage import shadow as shadow_sql
        from radsched.storage.connect import storage

        tz = ZoneInfo(settings.timezone)
        try:
            since = parse_since(args.since, tz, datetime.now(UTC))
        except argparse.ArgumentTypeError as exc:
            print(f"radsched shadow report: {exc}")
            return 2
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(storage(settings, stack, None, owner=False))
            async with store.db.transaction("cli.shadow_report") as conn:
                rows = await shadow_sql.summary(conn, since, examples=args.examples)
        print(render_json(rows, since) if args.json else render_table(rows, since, tz), end="")
        return 0

    return run_async(go)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("shadow", help="parallel run with the engine being replaced")
    sub = parser.add_subparsers(dest="shadow_command", required=True, metavar="SUBCOMMAND")
    report = sub.add_parser("report", help="mismatches by kind, with counts and examples")
    report.add_argument(
        "--since", metavar="DATE", help="YYYY-MM-DD (local) or ISO time; default 30 days ago"
    )
    report.add_argument("--examples", type=int, default=3, help="examples per kind (default 3)")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=_report)
