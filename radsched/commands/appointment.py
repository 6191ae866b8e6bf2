"""``radsched appointment show ID | cancel ID --by NAME [--reason TEXT]``: support staff's view and cancel.

``show`` reads the record from the database (it works without a running daemon) and prints it as JSON,
without patient data. ``cancel`` asks the running daemon through its REST facade
(``POST /api/ris/cancel-appointment`` with the first of ``API_KEYS``), so the cancel takes the same
crash-safe, idempotent path as any other (SRM^S04 / ORM CA to the RIS, SIU^S15 to the EMRs), and then
records who asked, the outcome and the reason in ``config_audit``. Keep patient data out of ``--reason``:
it goes to the RIS, the EMRs and the audit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["register", "show_appointment"]


async def show_appointment(settings: Any, appointment_id: str) -> dict[str, Any] | None:
    from contextlib import AsyncExitStack
    from zoneinfo import ZoneInfo

    from radsched.scheduling.lifecycle import AppointmentView
    from radsched.storage import appointments
    from radsched.storage.connect import storage

    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        async with db.transaction("cli.appointment_show") as conn:
            row = await appointments.get(conn, appointment_id)
    if row is None:
        return None
    view = AppointmentView.of(row)
    body = view.json(ZoneInfo(settings.timezone))
    body["patient_identifiers_until"] = (
        view.patient_identifiers_until.isoformat() if view.patient_identifiers_until else None
    )
    return body


async def _audit(
    settings: Any, appointment_id: str, *, by: str, old: str, new: str, note: str
) -> None:
    from contextlib import AsyncExitStack

    from radsched.storage import appointments
    from radsched.storage.connect import storage

    async with AsyncExitStack() as stack:
        db = (await stack.enter_async_context(storage(settings, stack, None, owner=False))).db
        async with db.transaction("cli.appointment_audit") as conn:
            await appointments.audit(
                conn,
                appointment_id=appointment_id,
                by=by,
                old=old,
                new=new,
                note=note,
                now=datetime.now(UTC),
            )


async def _post_cancel(url: str, key: str, appointment_id: str, reason: str) -> tuple[int, Any]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=60)
    body = {"appointment_id": appointment_id, "reason": reason}
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, json=body, headers={"X-API-Key": key}) as response,
    ):
        return response.status, await response.json()


def _show(args: argparse.Namespace) -> int:
    from radsched.settings import load_settings

    found = asyncio.run(show_appointment(load_settings(), args.id))
    if found is None:
        print(f"radsched appointment: no appointment {args.id!r}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    import aiohttp

    from radsched.commands.text import _daemon_url
    from radsched.secrets_store import split_list, stored_secret
    from radsched.settings import load_settings

    settings = load_settings()
    by = args.by.strip()
    if not by:
        print("radsched appointment: --by names who cancels (audited)", file=sys.stderr)
        return 2
    base = _daemon_url(settings.http_listen)
    keys = split_list(stored_secret(settings, "API_KEYS"))
    if base is None or not keys:
        print(
            "radsched appointment: needs the daemon's fixed RADSCHED_HTTP_LISTEN and an API key",
            file=sys.stderr,
        )
        return 2
    before = asyncio.run(show_appointment(settings, args.id))
    if before is None:
        print(f"radsched appointment: no appointment {args.id!r}", file=sys.stderr)
        return 1
    try:
        status, body = asyncio.run(
            _post_cancel(base + "/api/ris/cancel-appointment", keys[0], args.id, args.reason or "")
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"radsched appointment: the daemon at {base} did not answer: {exc}", file=sys.stderr)
        return 1
    outcome = body.get("status") if status == 200 else body.get("error", {}).get("code", status)
    note = f"cancel via CLI: {outcome}" + (f"; reason: {args.reason}" if args.reason else "")
    asyncio.run(
        _audit(
            settings, args.id, by=by, old=str(before["status"]), new=str(outcome), note=note[:500]
        )
    )
    if status != 200:
        print(
            f"radsched appointment: {body.get('error', {}).get('message', body)}", file=sys.stderr
        )
        return 1
    print(json.dumps(body, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "appointment",
        help="show an appointment's record, or cancel it at the RIS (audited)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the record (status, times, RIS id; no patient data)")
    show.add_argument("id", metavar="ID", help="our appointment id (SCH-1)")
    show.set_defaults(func=_show)
    cancel = actions.add_parser("cancel", help="cancel at the RIS; SIU^S15 to the EMRs")
    cancel.add_argument("id", metavar="ID")
    cancel.add_argument("--by", required=True, metavar="NAME", help="who cancels (audited)")
    cancel.add_argument("--reason", metavar="TEXT", help="why (to the RIS, the EMRs, the audit)")
    cancel.set_defaults(func=_cancel)
