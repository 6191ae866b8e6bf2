"""Actions on undelivered SIU (and SMS) rows, shared by ``radsched outbox`` and the admin console.

``retry`` puts an HL7 row back in its destination's queue, due now, with its original MSH-10, and
NOTIFYs the senders; ``drop`` dead-letters a row for good and deletes its body. SMS rows can be listed
and a *pending* text dropped, but never re-sent by hand (the SMS sender's never-send-twice rule).
Nothing returned here is PHI: ids, destinations, states, appointment ids, reasons.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Literal

from radsched.settings import Settings

__all__ = ["OutboxActionError", "drop_row", "list_outbox", "retry_row"]

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
    from radsched.storage import emr_outbox as store
    from radsched.storage import sms_outbox
    from radsched.storage.connect import storage

    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        async with db.transaction("cli.outbox_list") as conn:
            if kind == "hl7":
                rows = await store.list_rows(
                    conn, destination=destination, state=state, limit=limit
                )
            else:
                rows = await sms_outbox.list_rows(conn, state=state, limit=limit)
    return [dict(r) for r in rows]


async def retry_row(
    settings: Settings, row_id: int, *, kind: Kind = "hl7", to: str | None = None
) -> str:
    """Queue a row again, due now, same MSH-10. ``to`` sends an ``unrouted`` dead letter to a
    configured destination (MSH-5/6 rewritten for that route; the SIU's version is kept)."""
    from radsched.emr.routes import UNROUTED
    from radsched.storage import emr_outbox as store
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
    from radsched.secrets_store import stored_secret

    if not settings.emr_routes:
        raise OutboxActionError(
            "RADSCHED_EMR_ROUTES is not set: there is no destination to send to"
        )
    routes = [
        r for r in parse_routes(settings.emr_routes).routes if r.destination.name == destination
    ]
    if not routes:
        raise OutboxActionError(f"{destination!r} is not a destination in RADSCHED_EMR_ROUTES")
    phi = PhiBox.from_secret(stored_secret(settings, "PHI_KEY"))
    message = parse(open_body(phi, UNROUTED, control_id, sealed))
    return seal_body(
        phi, destination, control_id, readdress(message, routes[0].receiver, control_id)
    )


async def drop_row(settings: Settings, row_id: int, *, kind: Kind = "hl7") -> str:
    from radsched.storage import emr_outbox as store
    from radsched.storage import sms_outbox
    from radsched.storage.connect import storage

    now = datetime.now(UTC)
    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        async with db.transaction("cli.outbox_drop") as conn:
            if kind == "sms":
                if not await sms_outbox.drop_by_operator(conn, row_id):
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
