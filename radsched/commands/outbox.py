"""``radsched outbox list | retry ID | drop ID``: inspect and act on undelivered SIU (and SMS) messages.

Works beside a running daemon (``storage(..., owner=False)``). ``retry`` puts an HL7 row back in its
destination's queue, due now, with its original MSH-10, and NOTIFYs the senders; ``drop`` dead-letters
a row for good and deletes its body. SMS rows (``--kind sms``) can be listed and a *pending* text
dropped, but never re-sent by hand: the SMS sender's never-send-twice rule decides (docs/twilio.md).
Nothing printed here is PHI: ids, destinations, states, appointment ids, reasons.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from radsched.emr.outbox_actions import (
    HL7_STATES,
    SMS_STATES,
    OutboxActionError,
    drop_row,
    list_outbox,
    retry_row,
)
from radsched.settings import Settings

__all__ = ["OutboxActionError", "drop_row", "list_outbox", "register", "retry_row"]


# --- command line -------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}Z" if value else "-"


def _print_hl7(rows: Sequence[dict[str, Any]]) -> None:
    print(
        f"{'ID':>8}  {'DESTINATION':<22} {'STATE':<9} {'TYPE':<8} {'APPOINTMENT':<16} "
        f"{'FACILITY':<10} {'TRIES':>5}  {'CREATED':<20} {'NEXT / DONE':<20} REASON"
    )
    for r in rows:
        done = r["delivered_at"] or r["dead_at"]
        nxt = _when(done) if done else _when(r["next_attempt_at"])
        print(
            f"{r['id']:>8}  {r['destination'][:22]:<22} {r['state']:<9} {r['message_type']:<8} "
            f"{(r['appointment_id'] or '-')[:16]:<16} {(r['facility'] or '-')[:10]:<10} "
            f"{r['attempts']:>5}  {_when(r['created_at']):<20} {nxt:<20} {r['last_error'] or ''}"
        )


def _print_sms(rows: Sequence[dict[str, Any]]) -> None:
    print(f"{'ID':>8}  {'TEMPLATE':<24} {'STATE':<9} {'TRIES':>5}  {'CREATED':<20} REASON")
    for r in rows:
        print(
            f"{r['id']:>8}  {r['template_id'][:24]:<24} {r['state']:<9} {r['attempts']:>5}  "
            f"{_when(r['created_at']):<20} {r['last_error'] or ''}"
        )


def _list(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    states = HL7_STATES if args.kind == "hl7" else SMS_STATES
    if args.state and args.state not in states:
        print(f"radsched outbox: --state must be one of {', '.join(states)}", file=sys.stderr)
        return 2

    async def go(settings: Settings) -> int:
        rows = await list_outbox(
            settings,
            kind=args.kind,
            destination=args.destination,
            state=args.state,
            limit=args.limit,
        )
        if args.json:
            print(json.dumps(rows, default=str, indent=1))
        elif args.kind == "hl7":
            _print_hl7(rows)
        else:
            _print_sms(rows)
        return 0

    return run_async(go)


def _act(args: argparse.Namespace) -> int:
    from radsched.cli import run_async

    async def go(settings: Settings) -> int:
        try:
            if args.action == "retry":
                print(await retry_row(settings, args.id, kind=args.kind, to=args.to))
            else:
                print(await drop_row(settings, args.id, kind=args.kind))
        except OutboxActionError as exc:
            print(f"radsched outbox {args.action}: {exc}", file=sys.stderr)
            return 1
        return 0

    return run_async(go)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "outbox", help="inspect, retry or drop undelivered SIU (and SMS) messages"
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="list outbox rows, newest first")
    listing.add_argument("--kind", choices=("hl7", "sms"), default="hl7")
    listing.add_argument("--destination", help="only this EMR destination (hl7)")
    listing.add_argument(
        "--state", help="pending, delivered, dead (sms: also sending, sent, failed)"
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=_list)
    for action, text in (
        ("retry", "queue a pending or dead-lettered SIU again, due now, same MSH-10"),
        ("drop", "dead-letter a row for good and delete its body"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("id", type=int, metavar="ID")
        p.add_argument("--kind", choices=("hl7", "sms"), default="hl7")
        if action == "retry":
            p.add_argument(
                "--to",
                metavar="DESTINATION",
                help="send an unrouted dead letter to this destination",
            )
        p.set_defaults(func=_act, action=action)
