"""``radsched text FROM BODY``: post a correctly signed inbound SMS to the running daemon.

For demos and rehearsals on embedded defaults: it builds the form Twilio would post for a patient's
text, signs it with the auth token the daemon uses (``TWILIO_AUTH_TOKEN``, else the one generated
into ``DATA_DIR/secrets``) over ``PUBLIC_URL`` + ``/sms/inbound`` — exactly what the daemon checks —
and posts it to the daemon's HTTP address. The signature check therefore stays on. It prints the
daemon's answer; the reply text itself goes through the outbox (printed by the daemon in console
mode).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Mapping

__all__ = ["inbound_sms_form", "register", "signature"]

INBOUND_PATH = "/sms/inbound"
DEFAULT_TO = "+15005550006"  # Twilio's "valid" magic test number: the practice's side of the chat


def inbound_sms_form(
    *, account_sid: str, from_: str, to: str, body: str, message_sid: str | None = None
) -> dict[str, str]:
    """The fields Twilio posts for an inbound SMS (its usual subset; Twilio adds more at will)."""
    sid = message_sid or "SM" + secrets.token_hex(16)
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": from_,
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": to,
    }


def signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(auth_token).compute_signature(url, dict(form)))


def _daemon_url(http_listen: str) -> str | None:
    from radsched.settings import HostPort

    addr = HostPort.parse(http_listen, setting="RADSCHED_HTTP_LISTEN")
    if addr.port == 0:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(addr.host, addr.host)  # noqa: S104
    return f"http://{HostPort(host, addr.port)}"


async def post_text(url: str, form: Mapping[str, str], sig: str) -> tuple[int, str]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=dict(form), headers={"X-Twilio-Signature": sig}) as response,
    ):
        return response.status, await response.text()


def _run(args: argparse.Namespace) -> int:
    import asyncio

    import aiohttp

    from radsched.privacy import normalise_phone
    from radsched.secrets_store import stored_secret
    from radsched.settings import load_settings

    settings = load_settings()
    if normalise_phone(args.sender) is None:
        print("radsched text: FROM is not a valid phone number", file=sys.stderr)
        return 2
    base = args.url or _daemon_url(settings.http_listen)
    if base is None:
        print("radsched text: RADSCHED_HTTP_LISTEN has port 0; pass --url", file=sys.stderr)
        return 2
    token = stored_secret(settings, "TWILIO_AUTH_TOKEN")
    form = inbound_sms_form(
        account_sid=settings.twilio_account_sid or "AC" + "0" * 32,
        from_=args.sender,
        to=args.to or (settings.twilio_from or DEFAULT_TO),
        body=args.body,
        message_sid=args.sid,
    )
    # Signed for the URL Twilio would call (PUBLIC_URL), sent to where the daemon listens.
    sig = signature(token, settings.public_url + INBOUND_PATH, form)
    try:
        status, text = asyncio.run(post_text(base.rstrip("/") + INBOUND_PATH, form, sig))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"radsched text: cannot reach the daemon at {base}: {exc}", file=sys.stderr)
        return 1
    print(f"{status} {form['MessageSid']}")
    if text:
        print(text)
    return 0 if 200 <= status < 300 else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "text", help="post a signed inbound SMS to the running daemon (demos, rehearsals)"
    )
    parser.add_argument("sender", metavar="FROM", help="the patient's number, e.g. +12125550123")
    parser.add_argument("body", metavar="BODY", help="the text, e.g. YES")
    parser.add_argument(
        "--url", help="the daemon's base URL (default: http:// + RADSCHED_HTTP_LISTEN)"
    )
    parser.add_argument(
        "--to", help=f"the practice's number (default: TWILIO_FROM or {DEFAULT_TO})"
    )
    parser.add_argument(
        "--sid", help="MessageSid to use (default: a fresh one; repeat to test de-duplication)"
    )
    parser.set_defaults(func=_run)
