"""``radsched requests list | approve ID --by NAME | deny ID --by NAME [--note TEXT]``: patients' requests
after booking, decided by a person (issue 13 item 3).

A patient who replies 3 to an appointment booked by text, who opts out with an appointment still
booked, or whose reply cannot be tied to one appointment, raises a request. ``list`` prints the
pending ones (oldest first; no patient data). ``approve`` cancels the appointment at the RIS
(SRM^S04 / ORM CA, SIU^S15 to the EMRs) and texts the patient; ``deny`` texts the patient to call.
Both ask the running daemon (``/api/staff-requests``, with the first of ``API_KEYS``), and every
decision is audited with ``--by``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

__all__ = ["register"]

_PREFIX = "radsched requests"


async def _call(method: str, url: str, key: str, body: dict[str, Any] | None) -> tuple[int, Any]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, json=body, headers={"X-API-Key": key}) as response,
    ):
        return response.status, await response.json()


def _daemon() -> tuple[str, str] | None:
    from radsched.commands.text import _daemon_url
    from radsched.secrets_store import split_list, stored_secret
    from radsched.settings import load_settings

    settings = load_settings()
    base = _daemon_url(settings.http_listen)
    keys = split_list(stored_secret(settings, "API_KEYS"))
    if base is None or not keys:
        print(
            f"{_PREFIX}: needs the daemon's fixed RADSCHED_HTTP_LISTEN and an API key",
            file=sys.stderr,
        )
        return None
    return base, keys[0]


def _run(method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any] | None:
    import aiohttp

    target = _daemon()
    if target is None:
        return None
    base, key = target
    try:
        return asyncio.run(_call(method, base + path, key, body))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"{_PREFIX}: the daemon at {base} did not answer: {exc}", file=sys.stderr)
        return None


def _ask(method: str, path: str, body: dict[str, Any] | None) -> Any | int:
    """The daemon's JSON answer, or the exit code (2: no daemon to ask, 1: it refused)."""
    answer = _run(method, path, body)
    if answer is None:
        return 2
    status, reply = answer
    if status != 200:
        print(f"{_PREFIX}: {reply.get('error', {}).get('message', reply)}", file=sys.stderr)
        return 1
    return reply


def _list(args: argparse.Namespace) -> int:
    state = None if args.state == "all" else args.state
    body = _ask("GET", "/api/staff-requests" + (f"?state={state}" if state else ""), None)
    if isinstance(body, int):
        return body
    requests = body["requests"]
    if args.json:
        print(json.dumps(requests, indent=2))
        return 0
    if not requests:
        print("no requests" + (f" {state}" if state else ""))
        return 0
    print(f"{'ID':>6}  {'KIND':<9}  {'STATE':<8}  {'APPOINTMENT':<18}  {'MODALITY':<8}  CREATED")
    for r in requests:
        print(
            f"{r['id']:>6}  {r['kind']:<9}  {r['state']:<8}  {r['appointment_id'] or '-':<18}  "
            f"{r['modality'] or '-':<8}  {r['created_at']}"
        )
    return 0


def _decide(args: argparse.Namespace, action: str) -> int:
    by = args.by.strip()
    if not by:
        print(f"{_PREFIX}: --by names who decides (audited)", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"by": by}
    if action == "deny" and args.note:
        body["note"] = args.note
    reply = _ask("POST", f"/api/staff-requests/{args.id}/{action}", body)
    if isinstance(reply, int):
        return reply
    print(json.dumps(reply, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "requests",
        help="patients' requests after booking: list, approve (cancel at the RIS) or deny",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the pending requests, oldest first")
    listing.add_argument(
        "--state", choices=["pending", "approved", "denied", "all"], default="pending"
    )
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(func=_list)
    approve = actions.add_parser(
        "approve", help="cancel the appointment at the RIS; text the patient"
    )
    approve.add_argument("id", metavar="ID", type=int)
    approve.add_argument("--by", required=True, metavar="NAME", help="who decides (audited)")
    approve.set_defaults(func=lambda args: _decide(args, "approve"))
    deny = actions.add_parser("deny", help="keep the appointment; text the patient to call")
    deny.add_argument("id", metavar="ID", type=int)
    deny.add_argument("--by", required=True, metavar="NAME", help="who decides (audited)")
    deny.add_argument("--note", metavar="TEXT", help="why (kept with the request; no patient data)")
    deny.set_defaults(func=lambda args: _decide(args, "deny"))
