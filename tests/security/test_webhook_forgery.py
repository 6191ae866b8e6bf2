"""Twilio webhooks and request bodies, beyond tests/smstwilio/test_webhooks.py (which covers the
missing, forged, wrong-URL, wrong-token and tampered-Body signatures, a repeated MessageSid and a
declared oversized body): a captured valid signature replayed with other fields, to another
endpoint or URL, and bodies over the limit that do not declare their size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from radsched.twilio.webhooks import MAX_BODY_BYTES
from tests.security.conftest import API_KEY, ORDER_TOKEN, PUBLIC_URL, Secured, SecuredFactory
from tests.twilio_double import inbound_form, new_sid, sign

PATIENT = "+12175550177"


@pytest.fixture
async def live(secured: SecuredFactory) -> AsyncIterator[Secured]:
    # No failure budget in the way: these tests send many refused requests from one address.
    async with secured(rate_limit_auth_failures_per_min=0) as s:
        yield s


def captured(s: Secured, body: str = "YES") -> tuple[dict[str, str], str]:
    """A genuine inbound webhook as an eavesdropper (or a proxy log) would have seen it."""
    form = inbound_form(s.twilio.account_sid, from_=PATIENT, body=body, to="+15005550006")
    return form, sign(s.twilio.auth_token, PUBLIC_URL + "/sms/inbound", form)


async def conversations(s: Secured) -> int:
    async with s.daemon.db.transaction("test.count") as conn:
        return int(await conn.fetchval("SELECT count(*) FROM sms_inbound"))


REPLAYS = (
    "other_body",
    "other_sid",
    "other_sender",
    "extra_field",
    "field_removed",
    "to_status_endpoint",
    "query_added",
    "http_scheme",
    "empty_signature",
    "signature_of_another_request",
)


async def test_replayed_signature_with_anything_changed_is_refused(live: Secured) -> None:
    # One daemon for every variant: each is a separate request, and none may leave a trace.
    for replay in REPLAYS:
        await _replay(live, replay)


async def _replay(live: Secured, replay: str) -> None:
    form, signature = captured(live)
    path = "/sms/inbound"
    if replay == "other_body":
        form["Body"] = "STOP"
    elif replay == "other_sid":
        form["MessageSid"] = form["SmsSid"] = new_sid()
    elif replay == "other_sender":
        form["From"] = "+12175550178"
    elif replay == "extra_field":
        form["NumMedia"] = "1"
        form["MediaUrl0"] = "https://attacker.example/x.png"
    elif replay == "field_removed":
        del form["FromCountry"]
    elif replay == "to_status_endpoint":
        path = "/sms/status"
        form["MessageStatus"] = "delivered"
    elif replay == "query_added":
        path = "/sms/inbound?x=1"
    elif replay == "http_scheme":
        signature = sign(
            live.twilio.auth_token, PUBLIC_URL.replace("https", "http") + "/sms/inbound", form
        )
    elif replay == "empty_signature":
        signature = ""
    elif replay == "signature_of_another_request":
        _, signature = captured(live, body="something else")
    status, _, body = await live.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert status == 403 and body["error"]["code"] == "forbidden", replay
    assert await conversations(live) == 0, f"{replay}: a refused webhook left a trace"


async def test_the_genuine_request_itself_is_accepted_once(live: Secured) -> None:
    form, signature = captured(live)
    for _ in range(2):
        status, _, _ = await live.post(
            "/sms/inbound", data=form, headers={"X-Twilio-Signature": signature}
        )
        assert status == 200
    assert await conversations(live) == 1


async def _chunked(live: Secured, path: str, size: int, **headers: str) -> tuple[int, str]:
    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            chunk = b"Body=" + b"x" * 8187
            sent += len(chunk)
            yield chunk

    async with live.http.post(live.base + path, data=body(), headers=headers) as response:
        return response.status, await response.text()


async def test_bodies_over_the_limits_are_refused_declared_or_not(live: Secured) -> None:
    # Webhooks: over 64 KiB without a Content-Length (chunked) is still 413.
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}
    for path in ("/sms/inbound", "/sms/status"):
        status, text = await _chunked(live, path, MAX_BODY_BYTES + 8192, **form_headers)
        assert status == 413 and "payload_too_large" in text, path
    # Every public POST: over the app limit (256 KiB) is refused, declared (before a byte of it is
    # read) or chunked (at the limit), with or without valid credentials.
    data = b"{" + b" " * (1024 * 1024) + b"}"
    for path, headers in (
        ("/api/ris/book-appointment", {"X-API-Key": API_KEY}),
        ("/api/orders", {"Authorization": f"Bearer {ORDER_TOKEN}"}),
        ("/sms/inbound", {}),
    ):
        async with live.http.post(
            live.base + path, data=data, headers={**headers, "Content-Type": "application/json"}
        ) as response:
            assert response.status == 413, path
        status, _ = await _chunked(live, path, 1024 * 1024, **headers)
        assert status == 413, path


async def test_a_captured_webhook_re_split_into_a_new_message_sid_is_refused(live: Secured) -> None:
    # The signature concatenates name+value without separators, so moving "NumMedia0" into the
    # MessageSid value keeps it valid: only the strict SID format and SID agreement stop it.
    form, signature = captured(live)
    form["MessageSid"] += "NumMedia" + form.pop("NumMedia")
    assert sign(live.twilio.auth_token, PUBLIC_URL + "/sms/inbound", form) == signature
    status, _, body = await live.post(
        "/sms/inbound", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert status == 400 and "MessageSid" in body["error"]["message"]
    assert await conversations(live) == 0


async def test_sid_fields_that_disagree_are_refused(live: Secured) -> None:
    form, _ = captured(live)
    form["SmsSid"] = new_sid()
    signature = sign(live.twilio.auth_token, PUBLIC_URL + "/sms/inbound", form)
    status, _, body = await live.post(
        "/sms/inbound", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert await conversations(live) == 0


async def test_a_signed_webhook_from_another_account_is_refused(live: Secured) -> None:
    form, _ = captured(live)
    form["AccountSid"] = "AC" + "0" * 32
    signature = sign(live.twilio.auth_token, PUBLIC_URL + "/sms/inbound", form)
    status, _, body = await live.post(
        "/sms/inbound", data=form, headers={"X-Twilio-Signature": signature}
    )
    assert status == 403 and body["error"]["code"] == "wrong_account"
    assert await conversations(live) == 0
