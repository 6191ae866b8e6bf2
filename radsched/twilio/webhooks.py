"""Twilio webhooks: ``POST /sms/inbound`` (a patient's text) and ``POST /sms/status`` (delivery).

Both verify ``X-Twilio-Signature`` with the SDK's ``RequestValidator`` over ``PUBLIC_URL`` + the
path and query Twilio called (never ``request.url``: behind a TLS-terminating proxy the daemon sees
``http://127.0.0.1:3010``, Twilio signed ``https://sched.example.org``), and answer 403 when it does
not verify. MessageSid must be SM|MM + 32 hex digits and agree with SmsSid/SmsMessageSid (a
looser check lets a captured webhook be re-split). A repeated webhook (same MessageSid, or same
MessageSid and status) is acknowledged and ignored, and so is a replayed one: a request whose
``X-Twilio-Signature`` was seen before, whatever its fields (``radsched.storage.webhook_signatures``).
Replies to the patient never go in the webhook answer: it is always an empty ``<Response/>``, and
texts leave through the outbox.
"""

from __future__ import annotations

import enum
import hmac
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

from radsched.logs import correlated
from radsched.privacy import normalise_phone
from radsched.rest import openapi
from radsched.rest.errors import error_response
from radsched.storage import sms_inbound
from radsched.storage import sms_outbox as store
from radsched.storage.db import Database
from radsched.storage.webhook_signatures import WebhookSignatures
from radsched.twilio.providers import ENGINE_CODES, callback_error_class
from radsched.twilio.sender import SmsMetrics, report_delivery_failure

# Logger name kept from before the move to radsched/twilio: operators filter on it.
log = logging.getLogger("radsched.sms.webhooks")

INBOUND_PATH = "/sms/inbound"
STATUS_PATH = "/sms/status"
# Twilio's form for one text is a few kilobytes (Body ≤ 1,600 characters, percent-encoded, plus up
# to ten media URLs and location fields); 64 KiB leaves room for fields Twilio adds without notice.
MAX_BODY_BYTES = 64 * 1024
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# A claim on a webhook not completed within this long (the daemon died mid-transition) may be
# retaken by a retry of the same webhook.
CLAIM_STALE_S = 60.0
# Twilio message SIDs are SM/MM + 32 lowercase hex digits. A strict pattern matters: the signature
# concatenates names and values without separators, so a looser one lets a captured webhook be
# re-split into a "new" MessageSid that still verifies (issue 11, item 2).
_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")
_SID_FIELDS = ("MessageSid", "SmsSid", "SmsMessageSid")
_STATUS = re.compile(r"[a-z_]{1,32}")
SIGNATURE_HEADER = "X-Twilio-Signature"
# message_enum_status of Twilio's API spec (reference/sms.md 1.3); anything else is counted as
# "other" so that the metric's label set stays bounded.
KNOWN_STATUSES = frozenset(
    [
        "queued",
        "sending",
        "sent",
        "failed",
        "delivered",
        "undelivered",
        "receiving",
        "received",
        "accepted",
        "scheduled",
        "read",
        "partially_delivered",
        "canceled",
    ]
)


class InboundSink(Protocol):
    async def on_inbound_text(
        self, from_e164: str, body: str, message_sid: str, correlation_id: str
    ) -> None: ...

    async def on_delivery_failure(
        self, phone_hash: str, error_code: int, correlation_id: str
    ) -> None: ...


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def twiml() -> web.Response:
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


class SignedForms:
    """Reads a webhook's form body within the size limit and checks its Twilio signature."""

    def __init__(self, public_url: str, auth_token: str, account_sid: str | None = None) -> None:
        from twilio.request_validator import RequestValidator

        self._account_sid = account_sid
        self._public_url = public_url.rstrip("/")
        self._validator = RequestValidator(auth_token)

    async def read(self, request: web.Request) -> MultiDict[str]:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise _Refused(413, "payload_too_large", f"webhook body over {MAX_BODY_BYTES} bytes")
        mime = request.content_type
        if mime not in ("application/x-www-form-urlencoded", ""):
            raise _Refused(415, "unsupported_media_type", "expected a form body")
        # read(n) returns what has arrived (up to n), so a body in several packets takes a loop;
        # a chunked body without Content-Length is cut off at the limit all the same.
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Refused(
                    413, "payload_too_large", f"webhook body over {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
        raw = b"".join(chunks)
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _Refused(400, "bad_request", "form body is not UTF-8") from None
        form: MultiDict[str] = MultiDict(pairs)
        signature = request.headers.get(SIGNATURE_HEADER, "")
        # The URL Twilio called: our public base plus the path and query exactly as received.
        url = self._public_url + request.raw_path
        if not signature or not self._verifies(url, form, signature):
            raise _Refused(403, "forbidden", "X-Twilio-Signature does not verify")
        # A signed form from another account (a subaccount sharing the token, a test account) is
        # not a message to our numbers.
        if self._account_sid is not None and form.get("AccountSid") != self._account_sid:
            raise _Refused(403, "wrong_account", "AccountSid is not this daemon's account")
        return form

    def _verifies(self, url: str, form: MultiDict[str], signature: str) -> bool:
        # The URL as configured is what Twilio signs in practice: one HMAC. Only when that fails
        # does the SDK's validate() try the with/without-default-port variants it also accepts.
        expected = self._validator.compute_signature(url, form)
        if not signature.isascii():  # base64 only; non-UTF-8 header bytes arrive as surrogates
            return False
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
        return bool(self._validator.validate(url, form, signature))


class Webhooks:
    def __init__(
        self,
        *,
        db: Database,
        dsn: str,
        forms: SignedForms,
        signatures: WebhookSignatures,
        metrics: SmsMetrics,
        engine: Callable[[], InboundSink | None],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._signatures = signatures
        # De-duplication rows are written outside the pool, without waiting for the WAL flush:
        # losing one in a PostgreSQL crash can only let a retried webhook through, and the SMS
        # engine itself ignores a MessageSid it has seen (docs/twilio.md).
        self._dedup = store.DedicatedConnection(dsn, name="radsched-sms-webhooks")
        self._forms = forms
        self._metrics = metrics
        self._engine = engine
        self._clock = clock

    def _refuse(self, endpoint: str, exc: _Refused) -> web.Response:
        self._metrics.webhooks.labels(endpoint, exc.code).inc()
        if exc.status == 403:
            log.warning("webhook signature refused", extra={"endpoint": endpoint})
        return error_response(exc.status, exc.code, exc.message)

    async def inbound(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await self._forms.read(request)
            sid = _message_sid(form)
        except _Refused as exc:
            return self._refuse("inbound", exc)
        engine = self._engine()
        if engine is None:
            self._metrics.webhooks.labels("inbound", "engine_not_ready").inc()
            return error_response(503, "engine_not_ready", "the SMS engine is not running")
        with correlated(sid):
            sender = normalise_phone(form.get("From", ""))
            if sender is None:
                # Signed, so it is Twilio's; a short code or alphanumeric sender cannot be texted
                # back. Acknowledge so Twilio does not log an error for every such message.
                log.info("inbound text from a non-phone sender ignored", extra={"message_sid": sid})
                self._metrics.webhooks.labels("inbound", "unusable_sender").inc()
                return twiml()
            signature = request.headers.get(SIGNATURE_HEADER, "")
            claim = await self._claim(sid, "inbound", signature)
            if claim is _Claim.DUPLICATE:
                self._metrics.webhooks.labels("inbound", "duplicate").inc()
                return twiml()
            if claim is _Claim.REPLAY:
                await self._complete(sid, "inbound")
                return self._replayed("inbound", sid)
            try:
                await engine.on_inbound_text(sender, form.get("Body", ""), sid, sid)
            except Exception:
                # Release the claims so a retry of this webhook is processed, not ignored.
                await self._release(sid, "inbound", signature)
                log.exception("SMS engine failed on an inbound text", extra={"message_sid": sid})
                self._metrics.webhooks.labels("inbound", "error").inc()
                return error_response(500, "internal", "inbound text not processed")
            await self._complete(sid, "inbound")
        self._metrics.webhooks.labels("inbound", "accepted").inc()
        return twiml()

    async def status(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await self._forms.read(request)
            sid = _message_sid(form)
        except _Refused as exc:
            return self._refuse("status", exc)
        message_status = form.get("MessageStatus", form.get("SmsStatus", "")).strip().lower()
        if not _STATUS.fullmatch(message_status):
            return self._refuse("status", _Refused(400, "bad_request", "MessageStatus missing"))
        error_code = _int_or_none(form.get("ErrorCode"))
        outbox_id = _int_or_none(request.query.get("outbox"))
        now = self._clock()
        with correlated(sid):
            async with self._db.transaction("sms_status_callback") as conn:
                # A status lost in a PostgreSQL crash leaves the row one step behind; not worth
                # a WAL flush wait per callback.
                await sms_inbound.relax_durability(conn)
                claimed = await sms_inbound.claim(
                    conn, sid, message_status, now, done=True, stale_s=CLAIM_STALE_S
                )
                if claimed is None:
                    self._metrics.webhooks.labels("status", "duplicate").inc()
                    return twiml()
                signature = request.headers.get(SIGNATURE_HEADER, "")
                if not await self._signatures.claim(conn, signature, now):
                    return self._replayed("status", sid)
                klass = callback_error_class(error_code)
                change = await store.apply_status(
                    conn,
                    sid=sid,
                    message_status=message_status,
                    error_code=error_code,
                    error_class=klass.value
                    if store.target_state(message_status) == "failed"
                    else None,
                    outbox_id=outbox_id,
                    now=now,
                )
            self._metrics.statuses.labels(
                message_status if message_status in KNOWN_STATUSES else "other"
            ).inc()
            if change is None:
                self._metrics.webhooks.labels("status", "unknown_message").inc()
                return twiml()
            self._count_change(change, klass.value)
            if (
                change.new_state == "failed"
                and change.old_state != "failed"
                and error_code in ENGINE_CODES
            ):
                assert error_code is not None
                await report_delivery_failure(
                    self._engine(),
                    metrics=self._metrics,
                    phone_hash=change.phone_hash,
                    code=error_code,
                    correlation_id=change.correlation_id,
                    error_class=klass,
                )
        self._metrics.webhooks.labels("status", "accepted").inc()
        return twiml()

    def _count_change(self, change: store.StatusChange, error_class: str) -> None:
        if change.new_state == change.old_state:
            return
        if change.new_state == "failed":
            self._metrics.failed.labels(change.template_id, error_class).inc()
        elif change.old_state in ("pending", "failed", "dead"):
            # A text we had given up on (ambiguous send, 5xx) that Twilio did accept.
            self._metrics.sent.labels(change.template_id).inc()
            log.info(
                "status callback proved an unconfirmed text was sent",
                extra={"outbox_id": change.outbox_id},
            )

    def _replayed(self, endpoint: str, sid: str) -> web.Response:
        # Answered like a duplicate, so that a replay teaches its sender nothing.
        log.warning("replayed webhook ignored (signature seen before)", extra={"message_sid": sid})
        self._metrics.webhooks.labels(endpoint, "replayed").inc()
        return twiml()

    async def aclose(self) -> None:
        await self._dedup.close()

    async def _claim(self, sid: str, event: str, signature: str) -> _Claim:
        now = self._clock()
        async with self._dedup.use(reconnect=True) as conn:
            fresh = await sms_inbound.claim(
                conn, sid, event, now, done=False, stale_s=CLAIM_STALE_S
            )
            if fresh is None:
                return _Claim.DUPLICATE
            new_signature = await self._signatures.claim(conn, signature, now)
        # A stale claim retaken is Twilio retrying a webhook we died on: its signature is ours.
        if new_signature or not fresh:
            return _Claim.OWNED
        # A MessageSid not seen (or no longer remembered) under a signature seen before.
        return _Claim.REPLAY

    async def _complete(self, sid: str, event: str) -> None:
        async with self._dedup.use(reconnect=True) as conn:
            await sms_inbound.complete(conn, sid, event, self._clock())

    async def _release(self, sid: str, event: str, signature: str) -> None:
        async with self._dedup.use(reconnect=True) as conn:
            await sms_inbound.release(conn, sid, event)
            await self._signatures.release(conn, signature)


class _Claim(enum.Enum):
    OWNED = "owned"
    DUPLICATE = "duplicate"
    REPLAY = "replay"


def _message_sid(form: MultiDict[str]) -> str:
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if not _SID.fullmatch(sid):
        raise _Refused(400, "bad_request", "MessageSid missing or malformed")
    # Every SID field Twilio sends names the same message; a mismatch means a re-split form.
    if any(form.getall(name, [sid]) != [sid] for name in _SID_FIELDS):
        raise _Refused(400, "bad_request", "MessageSid, SmsSid and SmsMessageSid disagree")
    return sid


def _int_or_none(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())


def openapi_fragment() -> dict[str, Any]:
    """Both webhooks, for ``radsched.rest.openapi.add_paths``."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    common = {
        "AccountSid": {"type": "string"},
        "MessageSid": {"type": "string", "pattern": "^(SM|MM)[0-9a-f]{32}$"},
        "From": {"type": "string"},
        "To": {"type": "string"},
    }

    def operation(summary: str, op_id: str, required: list[str], extra: dict[str, Any]) -> Any:
        return {
            "summary": summary,
            "operationId": op_id,
            "description": "Called by Twilio. X-Twilio-Signature must verify against PUBLIC_URL "
            "plus the path and query; a repeated MessageSid, or a signature seen before (a "
            "replay), is acknowledged with empty TwiML and ignored.",
            "parameters": [
                {
                    "name": "X-Twilio-Signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": required,
                            "properties": {**common, **extra},
                            "additionalProperties": {"type": "string"},
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Empty TwiML (replies go through the outbox)",
                    "content": {"text/xml": {"schema": {"type": "string"}}},
                },
                **{
                    code: {"description": text, "content": error}
                    for code, text in (
                        ("400", "MessageSid or MessageStatus missing"),
                        ("403", "X-Twilio-Signature does not verify"),
                        ("413", f"Body over {MAX_BODY_BYTES} bytes"),
                        ("415", "Not a form body"),
                        ("500", "The SMS engine failed; a retry is processed"),
                        ("503", "The SMS engine is not running"),
                    )
                },
            },
        }

    status = operation(
        "Twilio status callback",
        "twilioStatusCallback",
        ["MessageSid", "MessageStatus"],
        {"MessageStatus": {"type": "string"}, "ErrorCode": {"type": "string"}},
    )
    status["parameters"].append(
        {"name": "outbox", "in": "query", "required": False, "schema": {"type": "integer"}}
    )
    return {
        "paths": {
            INBOUND_PATH: {
                "post": operation(
                    "Twilio inbound SMS",
                    "twilioInboundSms",
                    ["MessageSid", "From"],
                    {"Body": {"type": "string"}, "NumMedia": {"type": "string"}},
                )
            },
            STATUS_PATH: {"post": status},
        }
    }


def add_routes(
    app: web.Application,
    *,
    db: Database,
    dsn: str,
    public_url: str,
    auth_token: str,
    metrics: SmsMetrics,
    signatures: WebhookSignatures,
    engine: Callable[[], InboundSink | None],
    clock: Callable[[], datetime],
    account_sid: str | None = None,
) -> Webhooks:
    hooks = Webhooks(
        db=db,
        dsn=dsn,
        forms=SignedForms(public_url, auth_token, account_sid),
        signatures=signatures,
        metrics=metrics,
        engine=engine,
        clock=clock,
    )
    app.router.add_post(INBOUND_PATH, hooks.inbound)
    app.router.add_post(STATUS_PATH, hooks.status)
    if openapi.DOCUMENT in app:  # the REST facade serves the document
        openapi.add_paths(app, openapi_fragment())
    return hooks
