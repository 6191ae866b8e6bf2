"""End to end through every real part: an order over MLLP, texts through the Twilio SDK to the
Twilio double, the patient's replies as signed webhooks, the booking on the simulated RIS, the
confirmation text, delivery callbacks — then the privacy proof over everything that flow left behind.

The daemon, its helpers and the synthetic patient are the SMS engine's (tests/smsflow), so the two
halves of the SMS engine are proven together over the same flow.
"""

from __future__ import annotations

import logging
import re
import secrets

import pytest

from channels import AckCode
from tests.smsflow.conftest import PUBLIC_URL, Flow, Patient, clock, flow, twilio
from tests.twilio_double import Message

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

__all__ = ["clock", "flow", "twilio"]  # fixtures used from the engine's conftest


async def reply(flow: Flow, patient: Patient, body: str) -> None:
    """The patient texts ``body``: Twilio posts a signed webhook to the daemon."""
    status, answer = await flow.twilio.post_inbound(
        flow.http, PUBLIC_URL, from_=patient.e164, body=body
    )
    assert status == 200 and "<Response/>" in answer
    await flow.engine.drain()  # the RIS call the reply started


async def next_text(flow: Flow, count: int) -> Message:
    texts = await flow.texts(count)
    return texts[count - 1]


async def test_order_to_confirmation_through_twilio_then_no_phi_at_rest(
    flow: Flow, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    patient = Patient()
    order_id = "PL" + secrets.token_hex(4).upper()

    assert (await flow.order(order_id, patient)).code is AckCode.AA
    consent = await next_text(flow, 1)
    assert consent.to == patient.e164 and "YES" in consent.body

    await reply(flow, patient, "YES")
    locations = await next_text(flow, 2)
    assert re.search(r"\b1\b", locations.body), locations.body

    await reply(flow, patient, "1")
    slots = await next_text(flow, 3)
    assert slots.validity_period is not None, "a menu of times is time-sensitive"

    await reply(flow, patient, "1")
    confirmation = await next_text(flow, 4)
    [booking] = await flow.fetch("SELECT state, confirmation_code, source FROM bookings")
    assert booking["state"] == "booked" and booking["source"] == "sms"
    assert booking["confirmation_code"] in confirmation.body

    # Every text went out once, through the SDK, with our status callback.
    assert len(flow.twilio.requests) == 4 == len(flow.twilio.accepted)
    for message in flow.twilio.accepted:
        assert message.status_callback and message.status_callback.startswith(PUBLIC_URL)
        status, _ = await flow.twilio.post_status(message.sid, "delivered", deliver_to=flow.http)
        assert status == 200
    rows = await flow.fetch("SELECT state, payload FROM sms_outbox ORDER BY id")
    assert [r["state"] for r in rows] == ["delivered"] * 4
    assert all(r["payload"] is None for r in rows), "sealed texts are deleted once sent"
    assert len(await flow.fetch("SELECT * FROM sms_inbound WHERE event = 'inbound'")) == 3

    bodies = [m.body for m in flow.twilio.accepted]
    await assert_no_phi_at_rest(flow, patient, order_id, bodies, caplog)


def phi_needles(patient: Patient, order_id: str, bodies: list[str]) -> dict[str, str]:
    national = patient.area + patient.exchange + patient.line
    needles = {
        "phone (E.164)": patient.e164,
        "phone (national)": national,
        "phone (formatted)": f"{patient.exchange}-{patient.line}",
        "family name": patient.family,
        "given name": patient.given,
        "MRN": patient.mrn,
        "date of birth": patient.dob,
        "order id": order_id,
    }
    for n, body in enumerate(bodies):
        needles[f"text body {n}"] = body
    return needles


async def assert_no_phi_at_rest(
    flow: Flow,
    patient: Patient,
    order_id: str,
    bodies: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No PHI in any non-sealed column of any table, in any log record, or in the metrics."""
    needles = phi_needles(patient, order_id, bodies)
    columns = await flow.fetch(
        """
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND data_type <> 'bytea'
        """
    )
    tables: dict[str, list[str]] = {}
    for c in columns:
        tables.setdefault(c["table_name"], []).append(c["column_name"])
    assert {"sms_outbox", "sms_inbound", "sms_audit_log", "bookings", "orders"} <= set(tables)
    for table, names in tables.items():
        for row in await flow.fetch(f'SELECT * FROM "{table}"'):
            for name in names:
                text = "" if row[name] is None else str(row[name])
                for what, needle in needles.items():
                    assert needle not in text, f"{what} found in {table}.{name}"
    assert any(r.name == "radsched.sms.sender" for r in caplog.records)
    for record in caplog.records:
        rendered = record.getMessage() + " " + " ".join(str(v) for v in record.__dict__.values())
        for what, needle in needles.items():
            assert needle not in rendered, f"{what} found in a log record of {record.name}"
    metrics = flow.daemon.metrics.render().decode()
    for what, needle in needles.items():
        assert needle not in metrics, f"{what} found in the metrics"


async def test_twilio_21610_revokes_consent_in_the_real_engine(flow: Flow) -> None:
    patient = Patient()
    flow.twilio.refuse(patient.e164, 21610)  # opted out at Twilio: every send is refused
    assert (await flow.order("PL" + secrets.token_hex(4).upper(), patient)).code is AckCode.AA
    await flow.twilio.wait_requests(1)
    outbox = flow.daemon.sms_outbox
    assert outbox is not None and outbox.sender is not None
    outbox.wake()
    await outbox.sender.wait_idle(10)
    [consent] = await flow.fetch(
        "SELECT consent_state, source FROM patient_sms_consents WHERE phone_hash = $1",
        flow.hash_of(patient),
    )
    assert (consent["consent_state"], consent["source"]) == ("revoked", "twilio-21610")
    conversation = await flow.conversation(patient)
    assert conversation["state"] == "opted_out" and conversation["phi"] is None
    [row] = await flow.fetch("SELECT state, error_class, payload FROM sms_outbox")
    assert (row["state"], row["error_class"], row["payload"]) == ("failed", "opted_out", None)
    assert not flow.twilio.accepted and len(flow.twilio.requests) == 1
