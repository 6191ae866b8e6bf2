"""Where an outbound text goes: Twilio's Messages API (real SDK) or the demo console.

A provider sends exactly one HTTP request per call and never retries: the outbox owns retries
(docs/twilio.md, "the never-twice rule"). What the outbox needs back is either a ``SendResult``
(Twilio accepted the message and gave it a ``MessageSid``) or a ``SendError`` that says how the
failure is classified and whether a retry could send the text twice.

The one thing that decides "could it have been sent?" is whether the request left this process.
The Twilio provider records that with an aiohttp trace hook (``on_request_headers_sent``): a
failure before that point (DNS, connect refused, connect timeout) is safe to retry; a failure after
it (read timeout, connection reset before the answer) is *ambiguous* and is never retried.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol, TextIO
from urllib.parse import urlencode

import aiohttp
import phonenumbers

from radsched.errors import ConfigError

# How long one Messages API call may take end to end. Twilio answers in well under a second; a
# request still open after this is treated as ambiguous (see the module docstring).
SEND_TIMEOUT_S = 15.0


class ErrorClass(enum.StrEnum):
    """Why a send failed, as a bounded metric label and the outbox's ``error_class`` column."""

    OPTED_OUT = "opted_out"  # 21610: the patient texted STOP to our sender
    INVALID_NUMBER = "invalid_number"  # 21211 / 21614 (sync), 30005 / 30006 (callback)
    RATE_LIMITED = "rate_limited"  # HTTP 429 / 20429; 21611: the sender's queue at Twilio is full
    SERVER_ERROR = "server_error"  # HTTP 5xx
    AUTH = "auth"  # 401/403 / 20003: credentials or account problem, an operator must act
    NETWORK = "network"  # the request never left: DNS, connect refused, connect timeout
    AMBIGUOUS = "ambiguous"  # the request left and no answer came: never re-sent
    REJECTED = "rejected"  # any other 4xx: a safe default, not retried (dead-lettered)
    UNDELIVERED = "undelivered"  # accepted, then a failed/undelivered status callback
    EXPIRED = "expired"  # past not_after: dropped rather than sent late
    EXHAUSTED = "exhausted"  # retryable failures until the attempt limit


# Twilio error codes with a meaning we act on (reference/sms.md section 1.5). Twilio advises against
# hard-coding more than this: anything else falls back to the HTTP status.
OPT_OUT_CODES = frozenset({21610})
INVALID_NUMBER_CODES = frozenset({21211, 21614, 30005, 30006})
# 400 / 21611: the sender's queue at Twilio (about 10 hours of segments at its rate) is full. Nothing
# was created, and the queue drains at the sender's rate: retried with backoff like a 429, not lost.
QUEUE_FULL_CODES = frozenset({21611})
# Codes the SMS engine is told about (on_delivery_failure): opt-out and "this number cannot text".
ENGINE_CODES = OPT_OUT_CODES | INVALID_NUMBER_CODES


class SendError(Exception):
    """A send that did not produce a MessageSid. ``str()`` is PHI-free (no number, no body).

    Twilio's own error message often quotes the ``To`` number, so it is deliberately dropped: only
    the HTTP status and the numeric error code are kept.
    """

    def __init__(
        self,
        error_class: ErrorClass,
        *,
        retryable: bool,
        http_status: int | None = None,
        code: int | None = None,
    ) -> None:
        self.error_class = error_class
        self.retryable = retryable
        self.http_status = http_status
        self.code = code
        details = [f"twilio {code}"] if code is not None else []
        details += [f"HTTP {http_status}"] if http_status is not None else []
        super().__init__(error_class.value + (f" ({', '.join(details)})" if details else ""))


def classify_rejection(http_status: int, code: int | None) -> SendError:
    """Map a Twilio error answer (the request was received and refused) to a ``SendError``."""
    if code in OPT_OUT_CODES:
        return SendError(ErrorClass.OPTED_OUT, retryable=False, http_status=http_status, code=code)
    if code in INVALID_NUMBER_CODES:
        return SendError(
            ErrorClass.INVALID_NUMBER, retryable=False, http_status=http_status, code=code
        )
    if http_status == 429 or code == 20429 or code in QUEUE_FULL_CODES:
        return SendError(
            ErrorClass.RATE_LIMITED, retryable=True, http_status=http_status, code=code
        )
    if http_status >= 500:
        # Twilio documents 5xx as "not processed"; retried with backoff like 429.
        return SendError(
            ErrorClass.SERVER_ERROR, retryable=True, http_status=http_status, code=code
        )
    if http_status in (401, 403) or code == 20003:
        # Wrong credentials or a suspended account: retrying is safe (nothing was created) and the
        # texts go out once an operator fixes it, within the attempt limit.
        return SendError(ErrorClass.AUTH, retryable=True, http_status=http_status, code=code)
    return SendError(ErrorClass.REJECTED, retryable=False, http_status=http_status, code=code)


def callback_error_class(code: int | None) -> ErrorClass:
    """Classify the ``ErrorCode`` of a failed/undelivered status callback."""
    if code in OPT_OUT_CODES:
        return ErrorClass.OPTED_OUT
    if code in INVALID_NUMBER_CODES:
        return ErrorClass.INVALID_NUMBER
    return ErrorClass.UNDELIVERED


@dataclass(frozen=True, slots=True)
class OutboundText:
    """One text to send. ``to`` and ``body`` are PHI: never log this object's fields."""

    outbox_id: int
    to: str = field(repr=False)
    body: str = field(repr=False)
    template_id: str
    status_callback: str | None = None
    validity_period_s: int | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    sid: str
    status: str


class SmsProvider(Protocol):
    name: str

    async def send(self, text: OutboundText) -> SendResult: ...

    async def aclose(self) -> None: ...


# --- console -------------------------------------------------------------------------------


def mask_number(e164: str) -> str:
    """``+12125550123`` → ``+1******0123``: country code and last four digits only.

    Enough to tell two demo phones apart on a console, not enough to identify anyone; the
    decision is documented in docs/twilio.md ("Console mode").
    """
    try:
        country = str(phonenumbers.parse(e164, None).country_code)
    except phonenumbers.NumberParseException:
        country = ""
    digits = e164.lstrip("+")
    national = digits[len(country) :]
    if len(national) < 8:  # too short for the last four to leave enough hidden
        return "+" + country + "*" * len(national)
    return "+" + country + "*" * (len(national) - 4) + national[-4:]


class ConsoleProvider:
    """Prints each text to standard output instead of sending it (no TWILIO_ACCOUNT_SID).

    Standard output, not the logger: log lines must never carry a message body, and a demo on
    ``make run`` should show the text exactly as the patient would see it.
    """

    name = "console"

    def __init__(self, stream: Callable[[], TextIO] | None = None) -> None:
        # Resolved per call so that a test capturing sys.stdout sees the line.
        self._stream = stream or (lambda: sys.stdout)

    async def send(self, text: OutboundText) -> SendResult:
        out = self._stream()
        out.write(f"[SMS to {mask_number(text.to)} | {text.template_id}] {text.body}\n")
        out.flush()
        return SendResult(sid="CONSOLE" + secrets.token_hex(14), status="sent")

    async def aclose(self) -> None:
        return None


# --- Twilio --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Departure:
    left: bool = False


# Set by TwilioProvider.send around each call; read by the aiohttp trace hook, which runs inside the
# same task and therefore sees the same context.
_departure: contextvars.ContextVar[_Departure | None] = contextvars.ContextVar(
    "twilio_request_departure", default=None
)


async def _on_headers_sent(
    _session: aiohttp.ClientSession, _ctx: SimpleNamespace, _params: Any
) -> None:
    departure = _departure.get()
    if departure is not None:
        departure.left = True


_SDK_LOG = logging.getLogger("radsched.sms.twilio_sdk")
_SDK_LOG.setLevel(logging.WARNING)


def _sdk_http_client(trace: aiohttp.TraceConfig) -> Any:
    """The SDK's aiohttp client, with the form body encoded up front.

    Handed a dict, aiohttp builds a ``FormData`` (a multipart writer underneath) per request, which
    profiled at about half of the client-side cost of a send; an already-encoded body with the
    SDK's own ``Content-Type: application/x-www-form-urlencoded`` header is the same bytes on the wire.
    """
    from twilio.http.async_http_client import AsyncTwilioHttpClient

    class EncodedFormClient(AsyncTwilioHttpClient):  # type: ignore[misc]
        async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            data = kwargs.get("data")
            if isinstance(data, dict):
                kwargs["data"] = urlencode(data, doseq=True).encode()
            return await super().request(method, url, *args, **kwargs)

    return EncodedFormClient(trace_configs=[trace], logger=_SDK_LOG)


class TwilioProvider:
    """Sends through ``twilio.rest.Client`` with the SDK's aiohttp client and no SDK retries."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        api_url: str,
        timeout: float = SEND_TIMEOUT_S,
    ) -> None:
        from twilio.rest import Client

        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_on_headers_sent)
        # max_retries stays None: with a value the SDK wraps the session in aiohttp-retry, whose
        # defaults retry POST on every 5xx and could send a text twice (reference/sms.md trap 4).
        # The SDK logs half a dozen INFO lines per request (URL, headers); at hundreds of texts a
        # second that is real CPU and noise. Its warnings still get through.
        self._http = _sdk_http_client(trace)
        # environment={}: TWILIO_EDGE / TWILIO_REGION in the process environment would rewrite the
        # host name; RADSCHED_TWILIO_API_URL is the one place that decides where requests go.
        self._client = Client(account_sid, auth_token, http_client=self._http, environment={})
        # The SDK has no base-URL option; the Api domain's base_url is what every URL is built from.
        self._client.api.base_url = api_url.rstrip("/")
        self._messages = self._client.api.v2010.accounts(account_sid).messages
        self._sender = sender
        self._timeout = timeout

    async def send(self, text: OutboundText) -> SendResult:
        from twilio.base.exceptions import TwilioRestException

        kwargs: dict[str, Any] = {"to": text.to, "body": text.body}
        if self._sender.startswith("MG"):
            kwargs["messaging_service_sid"] = self._sender
        else:
            kwargs["from_"] = self._sender
        if text.status_callback:
            kwargs["status_callback"] = text.status_callback
        if text.validity_period_s is not None:
            kwargs["validity_period"] = text.validity_period_s
        departure = _Departure()
        token = _departure.set(departure)
        try:
            async with asyncio.timeout(self._timeout):
                message = await self._messages.create_async(**kwargs)
        except TwilioRestException as exc:
            code = exc.code if isinstance(exc.code, int) else None
            raise classify_rejection(int(exc.status), code) from None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            # ValueError: a 2xx whose body is not Twilio's JSON (a proxy page?): it was received.
            if departure.left:
                raise SendError(ErrorClass.AMBIGUOUS, retryable=False) from exc
            raise SendError(ErrorClass.NETWORK, retryable=True) from exc
        finally:
            _departure.reset(token)
        sid = getattr(message, "sid", None)
        if not isinstance(sid, str) or not sid:
            raise SendError(ErrorClass.AMBIGUOUS, retryable=False)
        return SendResult(sid=sid, status=str(getattr(message, "status", "") or "queued"))

    async def aclose(self) -> None:
        await self._http.close()


def make_provider(
    *,
    account_sid: str | None,
    auth_token: str,
    sender: str | None,
    api_url: str,
) -> SmsProvider:
    """The console provider without an account SID, else Twilio (TWILIO_FROM then required)."""
    if not account_sid:
        return ConsoleProvider()
    if not sender:
        raise ConfigError(
            "RADSCHED_TWILIO_FROM: required when RADSCHED_TWILIO_ACCOUNT_SID is set "
            "(a +E.164 number or a Messaging Service SID starting with MG)"
        )
    return TwilioProvider(
        account_sid=account_sid, auth_token=auth_token, sender=sender, api_url=api_url
    )
