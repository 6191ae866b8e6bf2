"""A stand-in for Twilio's Messages API (and Twilio's webhook calls), for tests and benchmarks.

It behaves like the real service where our code can tell the difference:

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP basic auth (account SID and
  auth token; 401 / error 20003 otherwise) and a form body: ``To`` (E.164, else 400 / 21211),
  ``From`` or ``MessagingServiceSid`` (else 400 / 21603), ``Body`` (else 400 / 21602), optional
  ``StatusCallback`` (absolute http(s) URL) and ``ValidityPeriod`` (1..36000, else 400 / 21609).
  Accepted messages get ``201`` and Twilio-shaped JSON with a fresh ``SM…`` sid, status ``queued``.
- ``GET …/Messages/{sid}.json`` returns an accepted message.
- Errors use Twilio's error JSON ``{"code", "message", "more_info", "status"}``.

Controls for tests: ``fail_next(n, status)`` (500 or 429), ``refuse(number, code)`` (21610 opted
out, 21211 invalid, 21614 not mobile …), ``stall()`` / ``release()`` (hold requests open: the crash
mid-send test), ``post_status(sid, status)`` (a signed status callback to the message's
``StatusCallback``), ``post_inbound(url, public_url, …)`` (a signed inbound-SMS webhook), and
``accepted`` / ``requests`` (what it saw).

Per-sender throughput (``rate``, segments per second per ``From`` / ``MessagingServiceSid``; None: no
limit) is modelled as Twilio does it (reference/sms.md section 1.7): a request above the rate is still
accepted (201) and waits in the sender's queue, which holds ``queue_s`` seconds of segments (Twilio: about
10 hours, 36,000 segments for a long code at 1/s); a request that would overflow it is refused with 400 /
21611 (queue full). Each accepted message records when it leaves the queue (``departs``) and whether its
``ValidityPeriod`` ran out in the queue first (Twilio would fail it, 30001); ``GET /_double/stats`` sums
this up for a double run as a subprocess.

Run alone (benchmarks): ``python -m tests.twilio_double --port 0 --account-sid AC… --auth-token …
[--rate SEGMENTS_PER_S] [--queue-seconds S]`` prints ``LISTENING host:port`` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from radsched.commands.text import inbound_sms_form
from radsched.conversation.gsm import segment_info

API_PREFIX = "/2010-04-01/Accounts/{account}/Messages"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")

ERROR_MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "The 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid ValidityPeriod",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21614: "'To' number is not a valid mobile number",
}
TWILIO_QUEUE_S = 36_000.0
"""How long a sender's queue is at its rate (about 10 hours of segments, reference/sms.md 1.7)."""
_STATUS_FOR_CODE = {20003: 401, 20429: 429, 20500: 500}


def new_sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a form POST to ``url``, computed the way Twilio does (SDK code)."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


@dataclass
class Message:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    validity_period: int | None
    form: dict[str, str]
    status: str = "queued"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    arrived: float = 0.0
    """time.time() when the request was accepted."""
    departs: float = 0.0
    """time.time() when it leaves the sender's queue (``arrived`` without a rate)."""
    segments: int = 1

    @property
    def expired_in_queue(self) -> bool:
        """Its ValidityPeriod ran out before its turn: Twilio would fail it (30001) unsent."""
        return (
            self.validity_period is not None and self.departs - self.arrived > self.validity_period
        )


@dataclass
class TwilioDouble:
    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    accepted: list[Message] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    rate: float | None = None
    """Segments per second per sender; None: unlimited."""
    queue_s: float = TWILIO_QUEUE_S
    refused_queue_full: int = 0
    _next_free: dict[str, float] = field(default_factory=dict)
    _fail: list[int] = field(default_factory=list)
    _refused: dict[str, int] = field(default_factory=dict)
    _stalled: asyncio.Event | None = None
    _arrived: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> TwilioDouble:
        app = web.Application()
        prefix = API_PREFIX.format(account="{account}")
        app.router.add_post(prefix + ".json", self._create)
        app.router.add_get(prefix + "/{sid}.json", self._fetch)
        app.router.add_get("/_double/stats", self._stats)
        self._arrived = asyncio.Condition()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.host = host
        return self

    async def stop(self) -> None:
        self.release()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> TwilioDouble:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """What to set RADSCHED_TWILIO_API_URL to."""
        return f"http://{self.host}:{self.port}"

    # --- controls ----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """The next ``count`` send requests fail with ``status`` (500, 503 or 429)."""
        self._fail.extend([status] * count)

    def refuse(self, number: str, code: int) -> None:
        """Sends to ``number`` fail with Twilio error ``code`` (21610, 21211, 21614, …)."""
        self._refused[number] = code

    def stall(self) -> None:
        """Hold every send request open (after recording it) until ``release()``."""
        self._stalled = asyncio.Event()

    def release(self) -> None:
        if self._stalled is not None:
            self._stalled.set()
            self._stalled = None

    async def wait_requests(self, count: int, timeout: float = 10.0) -> None:
        """Until at least ``count`` send requests arrived (accepted or not)."""
        assert self._arrived is not None
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    async def wait_accepted(self, count: int, timeout: float = 10.0) -> list[Message]:
        assert self._arrived is not None
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.accepted) >= count)
        return list(self.accepted)

    # --- the API -----------------------------------------------------------------------------

    def _error(self, code: int, status: int | None = None) -> web.Response:
        http = status or _STATUS_FOR_CODE.get(code, 400)
        return web.json_response(
            {
                "code": code,
                "message": ERROR_MESSAGES.get(code, "Error"),
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": http,
            },
            status=http,
        )

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )

    async def _note(self, form: dict[str, str]) -> None:
        assert self._arrived is not None
        async with self._arrived:
            self.requests.append(form)
            self._arrived.notify_all()

    async def _create(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        await self._note(form)
        if request.match_info["account"] != self.account_sid or not self._authorised(request):
            return self._error(20003)
        if self._stalled is not None:
            await self._stalled.wait()
        if self._fail:
            status = self._fail.pop(0)
            return self._error(20429 if status == 429 else 20500, status)
        to = form.get("To", "")
        if not to:
            return self._error(21604)
        if not _E164.fullmatch(to):
            return self._error(21211)
        if to in self._refused:
            return self._error(self._refused[to])
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not sender and not service:
            return self._error(21603)
        if not form.get("Body"):
            return self._error(21602)
        validity = form.get("ValidityPeriod")
        if validity is not None and not (validity.isdigit() and 1 <= int(validity) <= 36000):
            return self._error(21609)
        callback = form.get("StatusCallback")
        if callback is not None and not callback.startswith(("http://", "https://")):
            return self._error(21609)
        key = service or sender or ""
        segments = segment_info(form["Body"]).segments
        arrived = time.time()
        departs = arrived
        if self.rate:
            departs = max(arrived, self._next_free.get(key, 0.0))
            if departs + segments / self.rate - arrived > self.queue_s:
                self.refused_queue_full += 1
                return self._error(21611)
            self._next_free[key] = departs + segments / self.rate
        message = Message(
            sid=new_sid(),
            to=to,
            from_=sender,
            messaging_service_sid=service,
            body=form["Body"],
            status_callback=callback,
            validity_period=int(validity) if validity else None,
            form=form,
            status="accepted" if service else "queued",
            arrived=arrived,
            departs=departs,
            segments=segments,
        )
        assert self._arrived is not None
        async with self._arrived:
            self.accepted.append(message)
            self._arrived.notify_all()
        return web.json_response(self._resource(message), status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(20003)
        for message in self.accepted:
            if message.sid == request.match_info["sid"]:
                return web.json_response(self._resource(message))
        return self._error(20404, 404)

    def stats(self) -> dict[str, Any]:
        """What a run looked like from Twilio's side: accepted, refused (queue full), when the
        first request arrived, the last arrived and the last message left its sender's queue."""
        accepted = self.accepted
        return {
            "rate": self.rate,
            "queue_s": self.queue_s,
            "accepted": len(accepted),
            "segments": sum(m.segments for m in accepted),
            "refused_queue_full": self.refused_queue_full,
            "expired_in_queue": sum(m.expired_in_queue for m in accepted),
            "first_arrival": min((m.arrived for m in accepted), default=None),
            "last_arrival": max((m.arrived for m in accepted), default=None),
            "last_departure": max((m.departs for m in accepted), default=None),
            "max_wait_s": max((m.departs - m.arrived for m in accepted), default=0.0),
        }

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def _resource(self, m: Message) -> dict[str, Any]:
        created = format_datetime(m.created)
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": m.body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": m.from_,
            "messaging_service_sid": m.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": m.sid,
            "status": m.status,
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.sid}/Media.json"
            },
            "to": m.to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.sid}.json",
        }

    # --- Twilio calling us -------------------------------------------------------------------

    async def _post(
        self, url: str, form: dict[str, str], *, signed_url: str | None = None
    ) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"X-Twilio-Signature": sign(self.auth_token, signed_url or url, form)}
        async with self._session.post(url, data=form, headers=headers) as response:
            return response.status, await response.text()

    async def post_status(
        self,
        sid: str,
        status: str,
        *,
        error_code: int | None = None,
        deliver_to: str | None = None,
    ) -> tuple[int, str]:
        """A signed status callback for an accepted message, as Twilio sends it.

        The signature covers the ``StatusCallback`` URL the message was created with; the request
        goes to ``deliver_to`` when given (the daemon's real address behind a "proxy").
        """
        message = next(m for m in self.accepted if m.sid == sid)
        assert message.status_callback, "message was sent without a StatusCallback"
        message.status = status
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message.from_ or "+15005550006",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if message.messaging_service_sid:
            form["MessagingServiceSid"] = message.messaging_service_sid
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        target = message.status_callback
        if deliver_to is not None:
            parts = urlsplit(target)
            target = deliver_to + parts.path + (f"?{parts.query}" if parts.query else "")
        return await self._post(target, form, signed_url=message.status_callback)

    async def post_inbound(
        self,
        deliver_to: str,
        public_url: str,
        *,
        from_: str,
        body: str,
        to: str = "+15005550006",
        sid: str | None = None,
    ) -> tuple[int, str]:
        """A signed inbound-SMS webhook: signed for ``public_url``/sms/inbound, sent to
        ``deliver_to``/sms/inbound."""
        form = inbound_form(self.account_sid, from_=from_, body=body, to=to, sid=sid)
        return await self._post(
            deliver_to + "/sms/inbound", form, signed_url=public_url + "/sms/inbound"
        )


def inbound_form(
    account_sid: str, *, from_: str, body: str, to: str, sid: str | None = None
) -> dict[str, str]:
    """The fields Twilio posts for an inbound SMS: the usual set plus location fields, which Twilio
    adds without notice (so the signature check must cover whatever arrives)."""
    form = inbound_sms_form(account_sid=account_sid, from_=from_, to=to, body=body, message_sid=sid)
    return {**form, "FromCountry": "US", "ToCountry": "US"}


async def _serve(args: argparse.Namespace) -> None:
    double = TwilioDouble(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        rate=args.rate,
        queue_s=args.queue_seconds,
    )
    await double.start(args.host, args.port)
    print(f"LISTENING {double.host}:{double.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await double.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default=new_sid("AC"))
    parser.add_argument("--auth-token", default=secrets.token_hex(16))
    parser.add_argument("--rate", type=float, default=None, help="segments/s per sender")
    parser.add_argument(
        "--queue-seconds", type=float, default=TWILIO_QUEUE_S, help="a sender's queue, at its rate"
    )
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
