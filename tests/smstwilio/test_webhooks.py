"""Twilio webhooks on an in-process daemon: signatures, de-duplication, limits, status callbacks.

The webhooks call a ``RecordingEngine`` (given to ``running(sms_engine=...)``) so that each test
sees exactly the calls the webhook makes; the end-to-end tests use the real engine.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr

from radsched.daemon import Daemon, running
from radsched.privacy import phone_hash
from radsched.settings import Settings
from radsched.storage.sms_outbox import enqueue_text
from radsched.twilio.webhooks import EMPTY_TWIML, MAX_BODY_BYTES
from tests.smstwilio.conftest import PATIENT, RecordingEngine
from tests.twilio_double import TwilioDouble, inbound_form, new_sid, sign

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PUBLIC = "https://sched.example.org"


class EngineSwitch:
    """What the daemon's webhooks call: the recording engine, or None ("not running")."""

    def __init__(self, engine: RecordingEngine) -> None:
        self.engine: RecordingEngine | None = engine

    def __call__(self) -> RecordingEngine | None:
        return self.engine


@dataclass
class Running:
    daemon: Daemon
    engine: RecordingEngine
    double: TwilioDouble
    http: aiohttp.ClientSession
    switch: EngineSwitch

    @property
    def base(self) -> str:
        addr = self.daemon.listening["http"]
        return f"http://{addr.host}:{addr.port}"

    async def post(
        self, path: str, form: dict[str, str], *, signature: str | None = None
    ) -> tuple[int, str]:
        headers = {} if signature is None else {"X-Twilio-Signature": signature}
        async with self.http.post(self.base + path, data=form, headers=headers) as response:
            return response.status, await response.text()

    async def inbound(self, body: str = "YES", *, sid: str | None = None) -> tuple[int, str]:
        return await self.double.post_inbound(self.base, PUBLIC, from_=PATIENT, body=body, sid=sid)


def settings_for(data_dir: Path, database_url: str, double: TwilioDouble) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=SecretStr(database_url),
        http_listen="127.0.0.1:0",
        mllp_listen="127.0.0.1:0",
        public_url=PUBLIC,
        phone_hash_key=SecretStr(secrets.token_hex(32)),
        phi_key=SecretStr(secrets.token_hex(32)),
        twilio_account_sid=double.account_sid,
        twilio_auth_token=SecretStr(double.auth_token),
        twilio_from="+15005550006",
        twilio_api_url=double.url,
    )


@pytest.fixture
async def live(data_dir: Path, database_url: str, double: TwilioDouble) -> AsyncIterator[Running]:
    engine = RecordingEngine()
    switch = EngineSwitch(engine)
    async with (
        running(settings_for(data_dir, database_url, double), sms_engine=switch) as daemon,
        aiohttp.ClientSession() as http,
    ):
        yield Running(daemon, engine, double, http, switch)


async def test_signed_inbound_text_reaches_the_engine_once(live: Running) -> None:
    status, text = await live.double.post_inbound(
        live.base, PUBLIC, from_="(212) 555-0123", body="yes please"
    )
    assert (status, text) == (200, EMPTY_TWIML)
    [(sender, body, sid, cid)] = live.engine.inbound
    assert sender == PATIENT, "From is normalised to E.164"
    assert body == "yes please" and sid.startswith("SM") and cid == sid


async def test_repeated_message_sid_is_acknowledged_and_ignored(live: Running) -> None:
    sid = new_sid()
    assert (await live.inbound(sid=sid))[0] == 200
    assert (await live.inbound(sid=sid))[0] == 200
    assert len(live.engine.inbound) == 1


@pytest.mark.parametrize("case", ["missing", "forged", "wrong_url", "wrong_token", "tampered"])
async def test_unverified_signature_is_refused(live: Running, case: str) -> None:
    form = inbound_form(live.double.account_sid, from_=PATIENT, body="YES", to="+15005550006")
    url = PUBLIC + "/sms/inbound"
    signature = {
        "missing": None,
        "forged": "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        "wrong_url": sign(live.double.auth_token, live.base + "/sms/inbound", form),
        "wrong_token": sign("not-the-token", url, form),
        "tampered": sign(live.double.auth_token, url, form),
    }[case]
    if case == "tampered":
        form["Body"] = "STOP"
    status, text = await live.post("/sms/inbound", form, signature=signature)
    assert status == 403 and '"forbidden"' in text
    assert not live.engine.inbound


async def test_oversized_body_is_refused_with_413(live: Running) -> None:
    form = inbound_form(live.double.account_sid, from_=PATIENT, body="x" * MAX_BODY_BYTES, to="+1")
    status, text = await live.post("/sms/inbound", form, signature="irrelevant")
    assert status == 413 and "payload_too_large" in text
    assert not live.engine.inbound


async def test_engine_failure_answers_500_and_the_retry_is_processed(live: Running) -> None:
    live.engine.fail_next = 1
    sid = new_sid()
    assert (await live.inbound(sid=sid))[0] == 500
    assert (await live.inbound(sid=sid))[0] == 200
    assert len(live.engine.inbound) == 1


async def test_no_engine_means_503(live: Running) -> None:
    live.switch.engine = None
    status, text = await live.inbound()
    assert status == 503 and "engine_not_ready" in text


async def test_non_phone_sender_is_acknowledged_without_a_transition(live: Running) -> None:
    status, _ = await live.double.post_inbound(live.base, PUBLIC, from_="TWILIO", body="hi")
    assert status == 200 and not live.engine.inbound


async def _sent_text(live: Running) -> tuple[int, str]:
    """A text enqueued on the daemon and accepted by the double; returns (outbox id, sid)."""
    daemon = live.daemon
    async with daemon.db.transaction("test.enqueue") as conn:
        outbox_id = await enqueue_text(
            conn,
            phi=daemon.phi,
            to_e164=PATIENT,
            body="Reply YES to schedule",
            template_id="consent_request",
            phone_hash=phone_hash(daemon.hash_key, PATIENT),
            conversation_id=uuid.uuid4(),
            correlation_id="cid-1",
            now=daemon.clock(),
        )
    [message] = await live.double.wait_accepted(1)
    assert message.status_callback == f"{PUBLIC}/sms/status?outbox={outbox_id}"
    assert daemon.sms_outbox is not None and daemon.sms_outbox.sender is not None
    await daemon.sms_outbox.sender.wait_idle(5)
    return outbox_id, message.sid


async def _state(daemon: Daemon, outbox_id: int) -> tuple[str, str | None]:
    async with daemon.db.transaction("test.state") as conn:
        row = await conn.fetchrow(
            "SELECT state, provider_status FROM sms_outbox WHERE id = $1", outbox_id
        )
    assert row is not None
    return row["state"], row["provider_status"]


async def test_status_callbacks_move_the_row_forward_only(live: Running) -> None:
    outbox_id, sid = await _sent_text(live)
    assert await _state(live.daemon, outbox_id) == ("sent", None)
    assert (await live.double.post_status(sid, "delivered", deliver_to=live.base))[0] == 200
    assert await _state(live.daemon, outbox_id) == ("delivered", "delivered")
    # Late and repeated callbacks change nothing.
    assert (await live.double.post_status(sid, "sent", deliver_to=live.base))[0] == 200
    assert (await live.double.post_status(sid, "delivered", deliver_to=live.base))[0] == 200
    assert (await _state(live.daemon, outbox_id))[0] == "delivered"


async def test_failed_callback_with_21610_reports_the_opt_out(live: Running) -> None:
    outbox_id, sid = await _sent_text(live)
    status, _ = await live.double.post_status(
        sid, "undelivered", error_code=21610, deliver_to=live.base
    )
    assert status == 200
    assert (await _state(live.daemon, outbox_id))[0] == "failed"
    assert [(h, code) for h, code, _ in live.engine.failures] == [
        (phone_hash(live.daemon.hash_key, PATIENT), 21610)
    ]
    await live.double.post_status(sid, "undelivered", error_code=21610, deliver_to=live.base)
    assert len(live.engine.failures) == 1, "a repeated callback is ignored"


async def test_status_callback_signature_covers_the_query(live: Running) -> None:
    _, sid = await _sent_text(live)
    form = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": live.double.account_sid}
    signature = sign(live.double.auth_token, PUBLIC + "/sms/status?outbox=1", form)
    status, _ = await live.post("/sms/status?outbox=2", form, signature=signature)
    assert status == 403


async def test_webhooks_are_in_the_openapi_document(live: Running) -> None:
    async with live.http.get(live.base + "/api/openapi.json") as response:
        doc = await response.json()
    assert "post" in doc["paths"]["/sms/inbound"] and "post" in doc["paths"]["/sms/status"]


async def test_body_in_several_chunks_is_read_whole(live: Running) -> None:
    form = inbound_form(live.double.account_sid, from_=PATIENT, body="YES", to="+15005550006")
    signature = sign(live.double.auth_token, PUBLIC + "/sms/inbound", form)
    encoded = urlencode(form).encode()

    async def trickle() -> AsyncIterator[bytes]:
        for start in range(0, len(encoded), 40):
            yield encoded[start : start + 40]

    headers = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with live.http.post(live.base + "/sms/inbound", data=trickle(), headers=headers) as r:
        assert r.status == 200, await r.text()
    assert len(live.engine.inbound) == 1


async def test_chunked_body_over_the_limit_is_refused(live: Running) -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024

    headers = {"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"}
    async with live.http.post(live.base + "/sms/inbound", data=endless(), headers=headers) as r:
        assert r.status == 413


async def test_every_twilio_status_value_is_accepted(live: Running) -> None:
    _, sid = await _sent_text(live)
    for status in ("partially_delivered", "read"):
        code, _ = await live.double.post_status(sid, status, deliver_to=live.base)
        assert code == 200


def test_signature_check_matches_twilios_published_test_vector() -> None:
    """The vector from twilio-python's own tests (reference/sms.md section 1.4)."""
    from multidict import MultiDict

    from radsched.twilio.webhooks import SignedForms

    params = MultiDict(
        {
            "CallSid": "CA1234567890ABCDE",
            "Caller": "+14158675309",
            "Digits": "1234",
            "From": "+14158675309",
            "To": "+18005551212",
        }
    )
    forms = SignedForms("https://mycompany.com", "12345")
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert forms._verifies(url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert forms._verifies(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2", params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert not forms._verifies(url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B9=")
