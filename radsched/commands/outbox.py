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
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Literal

from radsched.settings import Settings

__all__ = ["OutboxActionError", "drop_row", "list_outbox", "register", "retry_row"]

Kind = Literal["hl7", "sms"]
HL7_STATES = ("pending", "delivered", "dead")
SMS_STATES = ("pending", "sending", "sent", "delivered", "failed", "dead")


class OutboxActionError(Exception):
    """The action does not apply to that row; the message says why (no PHI)."""


async def list_outbox(
    settings: Settings,
    *,
    kind: Kind = "hl7",
    destination: str | None = None,
    state: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first."""
    from radsched.emr import store
    from radsched.storage.connect import storage

    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        async with db.transaction("cli.outbox_list") as conn:
            if kind == "hl7":
                rows = await store.list_rows(
                    conn, destination=destination, state=state, limit=limit
                )
            else:
                rows = await conn.fetch(
                    """
                    SELECT id, template_id, state, attempts, created_at, next_attempt_at,
                           sent_at, last_error, payload IS NOT NULL AS has_body
                      FROM sms_outbox
                     WHERE ($1::text IS NULL OR state = $1)
                     ORDER BY id DESC LIMIT $2
                    """,
                    state,
                    limit,
                )
    return [dict(r) for r in rows]


async def retry_row(
    settings: Settings, row_id: int, *, kind: Kind = "hl7", to: str | None = None
) -> str:
    """Queue a row again, due now, same MSH-10. ``to`` sends an ``unrouted`` dead letter to a
    configured destination (MSH-5/6 rewritten for that route; the SIU's version is kept)."""
    from radsched.emr import store
    from radsched.emr.routes import UNROUTED
    from radsched.storage.connect import storage

    if kind == "sms":
        raise OutboxActionError(
            "SMS rows are never re-sent by hand: a text must not reach a patient twice "
            "(see docs/twilio.md); drop it, or let the SMS sender's own retries decide"
        )
    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        async with db.transaction("cli.outbox_retry") as conn:
            row = await store.get_row(conn, row_id)
            if row is None:
                raise OutboxActionError(f"no hl7_outbox row {row_id}")
            if row["state"] == "delivered":
                raise OutboxActionError(f"row {row_id} was already delivered")
            if not row["has_body"]:
                raise OutboxActionError(
                    f"row {row_id} has no body any more (dropped or purged); it cannot be re-sent"
                )
            if row["destination"] == UNROUTED:
                if to is None:
                    raise OutboxActionError(
                        f"row {row_id} had no route: add one for its facility to "
                        "RADSCHED_EMR_ROUTES, then `radsched outbox retry ID --to DESTINATION`"
                    )
                payload = _rerouted(settings, await store.body(conn, row_id), row["control_id"], to)
                await store.reroute(
                    conn, row_id, destination=to, payload=payload, now=datetime.now(UTC)
                )
                await store.notify(conn, [to])
                return f"row {row_id} queued for {to} (MSH-10 {row['control_id']})"
            if to is not None and to != row["destination"]:
                raise OutboxActionError("--to applies to unrouted dead letters only")
            await store.requeue(conn, row_id, now=datetime.now(UTC))
            await store.notify(conn, [row["destination"]])
    return f"row {row_id} queued again for {row['destination']} (MSH-10 {row['control_id']})"


def _rerouted(settings: Settings, sealed: bytes, control_id: str, destination: str) -> bytes:
    """Open an unrouted body, address it to ``destination``'s receiver, seal it for that row."""
    from channels import parse
    from radsched.emr.enqueue import open_body, seal_body
    from radsched.emr.relay import readdress
    from radsched.emr.routes import UNROUTED, parse_routes
    from radsched.privacy import PhiBox
    from radsched.secrets_store import resolve_secrets

    if not settings.emr_routes:
        raise OutboxActionError(
            "RADSCHED_EMR_ROUTES is not set: there is no destination to send to"
        )
    routes = [
        r for r in parse_routes(settings.emr_routes).routes if r.destination.name == destination
    ]
    if not routes:
        raise OutboxActionError(f"{destination!r} is not a destination in RADSCHED_EMR_ROUTES")
    phi = PhiBox.from_secret(resolve_secrets(settings).phi_key)
    message = parse(open_body(phi, UNROUTED, control_id, sealed))
    return seal_body(
        phi, destination, control_id, readdress(message, routes[0].receiver, control_id)
    )


async def drop_row(settings: Settings, row_id: int, *, kind: Kind = "hl7") -> str:
    from radsched.emr import store
    from radsched.storage.connect import storage

    now = datetime.now(UTC)
    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        async with db.transaction("cli.outbox_drop") as conn:
            if kind == "sms":
                done = await conn.fetchval(
                    """
                    UPDATE sms_outbox SET state = 'dead', payload = NULL,
                           last_error = 'dropped by operator'
                     WHERE id = $1 AND state = 'pending' RETURNING id
                    """,
                    row_id,
                )
                if done is None:
                    raise OutboxActionError(
                        f"no pending sms_outbox row {row_id} (only a text not yet being sent can be dropped)"
                    )
                return f"sms row {row_id} dropped"
            row = await store.get_row(conn, row_id)
            if row is None:
                raise OutboxActionError(f"no hl7_outbox row {row_id}")
            if row["state"] == "delivered":
                raise OutboxActionError(f"row {row_id} was already delivered")
            await store.drop(conn, row_id, now=now, reason="dropped by operator")
    return f"row {row_id} dropped (dead letter, body deleted)"


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
