"""Order intake over real MLLP and HTTP into an in-process daemon: commit before ACK, one text per order."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp

from channels import AckCode
from radsched.storage.consents import record_consent
from tests.smsflow.conftest import ORDER_TOKEN, PRACTICE, SCHEDULING_PHONE, Flow, Patient, orm


def new_order_id() -> str:
    return "PL" + secrets.token_hex(4).upper()


async def outbox_rows(flow: Flow, patient: Patient) -> list[str]:
    rows = await flow.fetch(
        "SELECT template_id FROM sms_outbox WHERE phone_hash = $1 ORDER BY id",
        flow.hash_of(patient),
    )
    return [r["template_id"] for r in rows]


async def test_order_is_stored_before_aa_with_conversation_and_one_text(flow: Flow) -> None:
    patient = Patient()
    ack = await flow.order(new_order_id(), patient)
    assert ack.code is AckCode.AA
    # Visible from another connection the moment the ACK arrived: commit happened first.
    conv = await flow.conversation(patient)
    assert conv["state"] == "awaiting_consent" and conv["phi"] is not None
    assert await outbox_rows(flow, patient) == ["consent_request"]
    orders = await flow.fetch("SELECT state, modality, source FROM orders")
    assert [tuple(r) for r in orders] == [("texting", "CR", "mllp")]
    texts = await flow.texts(1)
    assert texts[0].to == patient.e164
    assert PRACTICE in texts[0].body and "YES" in texts[0].body and "STOP" in texts[0].body
    assert flow.counter("radsched_orders_total", modality="CR", outcome="accepted") == 1


async def test_orders_for_one_phone_arriving_together_text_it_once(flow: Flow) -> None:
    # Six connections at once: the phone lock serialises them, and each look after it sees the
    # conversation the previous one committed, so the phone gets one live conversation and one text.
    patient = Patient()
    acks = await asyncio.gather(*(flow.order(new_order_id(), patient) for _ in range(6)))
    assert [a.code for a in acks] == [AckCode.AA] * 6
    assert await outbox_rows(flow, patient) == ["consent_request"]
    live = await flow.fetch("SELECT id FROM sms_conversations WHERE ended_at IS NULL")
    assert len(live) == 1
    states = sorted(
        (r["state"], r["deferred_reason"])
        for r in await flow.fetch("SELECT state, deferred_reason FROM orders")
    )
    assert states == [("deferred", "phone_busy")] * 5 + [("texting", None)]


async def test_duplicate_control_id_gets_the_same_ack_and_no_second_text(flow: Flow) -> None:
    patient = Patient()
    payload = orm("DUP-1", new_order_id(), patient)
    _, first = await flow.send_hl7(payload)
    _, second = await flow.send_hl7(payload)
    assert first == second
    assert await outbox_rows(flow, patient) == ["consent_request"]
    assert len(await flow.fetch("SELECT id FROM sms_conversations")) == 1


async def test_same_order_with_a_new_control_id_starts_no_second_conversation(flow: Flow) -> None:
    patient, order_id = Patient(), new_order_id()
    assert (await flow.order(order_id, patient)).code is AckCode.AA
    again = await flow.order(order_id, patient)
    assert again.code is AckCode.AA
    assert len(await flow.fetch("SELECT id FROM sms_conversations")) == 1
    assert await outbox_rows(flow, patient) == ["consent_request"]
    assert flow.counter("radsched_orders_total", modality="CR", outcome="duplicate") == 1


async def test_orc_ca_cancels_the_conversation_and_its_unsent_texts(flow: Flow) -> None:
    patient, order_id = Patient(), new_order_id()
    await flow.order(order_id, patient)
    ack = await flow.order(order_id, patient, control="CA")
    assert ack.code is AckCode.AA
    conv = await flow.conversation(patient)
    assert conv["state"] == "cancelled" and conv["ended_at"] is not None and conv["phi"] is None
    order = (await flow.fetch("SELECT state, phi FROM orders"))[0]
    assert order["state"] == "cancelled" and order["phi"] is None
    pending = await flow.fetch("SELECT id FROM sms_outbox WHERE state = 'pending'")
    assert pending == []
    # A reply afterwards is told the conversation is closed, not started again.
    await flow.reply(patient, "yes")
    assert (await flow.conversation(patient))["state"] == "cancelled"


async def test_cancel_for_an_unknown_order_is_acknowledged(flow: Flow) -> None:
    ack = await flow.order(new_order_id(), Patient(), control="CA")
    assert ack.code is AckCode.AA and "not known" in ack.text


async def test_order_without_a_mobile_number_is_refused_with_ae(flow: Flow) -> None:
    patient = Patient()
    ack = await flow.order(new_order_id(), patient, phone="^PRN^FX^^1^212^5550100")
    assert ack.code is AckCode.AE
    assert ack.text == "no usable mobile number in PID-13"
    assert await flow.fetch("SELECT id FROM orders") == []
    assert flow.counter("radsched_orders_total", modality="CR", outcome="rejected_no_mobile") == 1


async def test_order_with_an_unknown_modality_is_refused_with_ae(flow: Flow) -> None:
    ack = await flow.order(new_order_id(), Patient(), modality="XRAY")
    assert ack.code is AckCode.AE and "OBR-24" in ack.text
    assert await flow.fetch("SELECT id FROM orders") == []


async def test_v25_phone_form_is_read(flow: Flow) -> None:
    patient = Patient()
    ack = await flow.order(new_order_id(), patient, phone=patient.xtn25, version="2.5.1")
    assert ack.code is AckCode.AA
    assert (await flow.texts(1))[0].to == patient.e164


async def test_pid15_language_selects_the_texts(flow: Flow) -> None:
    patient = Patient()
    assert (
        await flow.order(new_order_id(), patient, language="SPA^Spanish^ISO639")
    ).code is AckCode.AA
    assert "Responda SI" in (await flow.texts(1))[0].body


async def test_disabled_modality_gets_the_call_us_text_and_is_counted(flow: Flow) -> None:
    patient = Patient()
    ack = await flow.order(new_order_id(), patient, modality="CT")  # not in ENABLED_MODALITIES
    assert ack.code is AckCode.AA
    texts = await flow.texts(1)
    assert SCHEDULING_PHONE in texts[0].body
    assert await outbox_rows(flow, patient) == ["call_us"]
    order = (await flow.fetch("SELECT state, deferred_reason FROM orders"))[0]
    assert tuple(order) == ("deferred", "modality_disabled")
    conv = await flow.conversation(patient)
    assert conv["state"] == "deferred_to_phone" and conv["phi"] is None
    labels = {"modality": "CT", "outcome": "deferred_modality_disabled"}
    assert flow.counter("radsched_orders_total", **labels) == 1


async def test_opted_out_patient_gets_no_consent_request(flow: Flow) -> None:
    patient = Patient()
    async with flow.daemon.db.transaction("test.optout") as conn:
        await record_consent(
            conn, flow.hash_of(patient), granted=False, source="STOP", now=flow.clock()
        )
    ack = await flow.order(new_order_id(), patient)
    assert ack.code is AckCode.AA
    assert await outbox_rows(flow, patient) == []
    order = (await flow.fetch("SELECT state, deferred_reason FROM orders"))[0]
    assert tuple(order) == ("deferred", "opted_out")
    labels = {"modality": "CR", "outcome": "deferred_opted_out"}
    assert flow.counter("radsched_orders_total", **labels) == 1


async def test_second_order_for_a_phone_in_conversation_goes_to_staff(flow: Flow) -> None:
    patient = Patient()
    await flow.order(new_order_id(), patient)
    await flow.order(new_order_id(), patient)
    assert await outbox_rows(flow, patient) == ["consent_request"]
    reasons = [r["deferred_reason"] for r in await flow.fetch("SELECT * FROM orders")]
    assert sorted(reasons, key=str) == [None, "phone_busy"]


# --- POST /api/orders ------------------------------------------------------------------------


async def post_order(flow: Flow, body: object, token: str | None = ORDER_TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(flow.http + "/api/orders", json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def api_order(patient: Patient, order_id: str, **extra: str) -> dict[str, str]:
    return {
        "order_id": order_id,
        "mrn": patient.mrn,
        "phone": f"({patient.area}) {patient.exchange}-{patient.line}",
        "modality": "DX",
        "procedure": "73030",
        "facility": "MAIN",
        **extra,
    }


async def test_api_order_accepted_then_duplicate(flow: Flow) -> None:
    patient, order_id = Patient(), new_order_id()
    assert await post_order(flow, api_order(patient, order_id)) == (202, {"status": "accepted"})
    assert await post_order(flow, api_order(patient, order_id)) == (202, {"status": "duplicate"})
    texts = await flow.texts(1)
    assert texts[0].to == patient.e164 and len(flow.twilio.accepted) == 1
    stored = await flow.fetch("SELECT source, modality, facility FROM orders")
    assert [tuple(r) for r in stored] == [("api", "DX", "MAIN")]


async def test_api_order_for_a_disabled_modality_is_deferred(flow: Flow) -> None:
    status = await post_order(flow, api_order(Patient(), new_order_id(), modality="MR"))
    assert status == (202, {"status": "deferred_to_phone"})


async def test_api_order_needs_a_known_bearer_token(flow: Flow) -> None:
    body = api_order(Patient(), new_order_id())
    for token in (None, "wrong-token-" + "x" * 24, ORDER_TOKEN[:-1]):
        status, payload = await post_order(flow, body, token)
        assert status == 401 and payload["error"]["code"] == "unauthorized"
    assert await flow.fetch("SELECT id FROM orders") == []


async def test_api_order_validation_names_the_field_without_echoing_it(flow: Flow) -> None:
    patient = Patient()
    cases = [
        ({k: v for k, v in api_order(patient, "X1").items() if k != "mrn"}, "mrn: required"),
        (api_order(patient, "X2", phone="12"), "phone: not a valid phone number"),
        (api_order(patient, "X3", modality="SCAN"), "modality: not a DICOM modality code"),
        ({**api_order(patient, "X4"), "ssn": "1"}, "ssn: unknown field"),
    ]
    for body, message in cases:
        status, payload = await post_order(flow, body)
        assert status == 400, body
        assert payload["error"] == {"code": "invalid_request", "message": message}
    status, payload = await post_order(flow, ["not", "an", "object"])
    assert status == 400
