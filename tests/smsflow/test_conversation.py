"""Whole conversations driven through ``on_inbound_text``, booking on the simulated RIS.

Texts are read where a patient would see them: at the Twilio double, after the daemon's own outbox
sender delivered them. The RIS is the daemon's in-process simulated RIS unless a test starts its own.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

from channels import AckCode
from radsched.commands.hash_phone import hash_phone
from radsched.commands.modality import change_modality, show_modalities
from radsched.simris import SimRis, default_calendar
from tests.smsflow.conftest import (
    SCHEDULING_PHONE,
    Clock,
    Flow,
    Patient,
    start_flow,
)
from tests.twilio_double import TwilioDouble
from tests.waiting import eventually

CODE = re.compile(r"\b[23456789A-HJ-NP-Z]{6}\b")


def new_order_id() -> str:
    return "PL" + secrets.token_hex(4).upper()


async def converse(flow: Flow, patient: Patient, body: str) -> str:
    """Send ``body`` as the patient; return the one text the daemon answered with."""
    before = len(flow.twilio.accepted)
    await flow.reply(patient, body)
    texts = await flow.texts(before + 1)
    assert texts[-1].to == patient.e164
    return texts[-1].body


async def book_by_text(flow: Flow, patient: Patient, order_id: str | None = None) -> str:
    before = len(flow.twilio.accepted)
    assert (await flow.order(order_id or new_order_id(), patient)).code is AckCode.AA
    assert "YES" in (await flow.texts(before + 1))[-1].body
    menu = await converse(flow, patient, "Yes")
    assert "1 Downtown Imaging" in menu
    slots = await converse(flow, patient, "1")
    assert "Downtown Imaging" in slots and "2 " in slots
    return await converse(flow, patient, "#2")


async def test_whole_conversation_books_on_the_simulated_ris(flow: Flow) -> None:
    patient = Patient()
    confirmation = await book_by_text(flow, patient)
    code = CODE.search(confirmation.split("Code", 1)[-1])
    assert code, confirmation
    assert "Downtown Imaging" in confirmation and SCHEDULING_PHONE in confirmation
    booking = (await flow.fetch("SELECT state, source, confirmation_code FROM bookings"))[0]
    assert tuple(booking) == ("booked", "sms", code.group(0))
    conv = await flow.conversation(patient)
    assert conv["state"] == "booked" and conv["phi"] is None and conv["ended_at"] is not None
    order = (await flow.fetch("SELECT state, phi FROM orders"))[0]
    assert order["state"] == "booked" and order["phi"] is None
    consent = await flow.fetch("SELECT consent_state FROM patient_sms_consents")
    assert [r["consent_state"] for r in consent] == ["granted"]
    audit = await flow.fetch(
        "SELECT direction, message_type FROM sms_audit_log WHERE phone_hash = $1 ORDER BY id",
        flow.hash_of(patient),
    )
    out = [r["message_type"] for r in audit if r["direction"] == "outbound"]
    assert out == ["consent_request", "location_menu", "slot_menu", "confirmation"]
    assert [r["message_type"] for r in audit if r["direction"] == "inbound"] == [
        "yes",
        "choice",
        "choice",
    ]
    # A text after the end is answered once with the "closed" text, from the ended conversation.
    assert "call" in (await converse(flow, patient, "thanks!")).lower()


async def test_more_pages_to_later_slots(flow: Flow) -> None:
    patient = Patient()
    await flow.order(new_order_id(), patient)
    await flow.texts(1)
    await converse(flow, patient, "yes")
    first = await converse(flow, patient, "2")
    later = await converse(flow, patient, "MORE")
    assert later != first and "North Campus" in later


async def test_stop_mid_conversation_revokes_consent_and_hands_over(flow: Flow) -> None:
    patient = Patient()
    await flow.order(new_order_id(), patient)
    await flow.texts(1)
    await converse(flow, patient, "yes")
    goodbye = await converse(flow, patient, "please stop texting me")
    assert "no more texts" in goodbye and "START" in goodbye
    conv = await flow.conversation(patient)
    assert conv["state"] == "opted_out" and conv["phi"] is None
    order = (await flow.fetch("SELECT state, deferred_reason FROM orders"))[0]
    assert tuple(order) == ("deferred", "opted_out")
    consent = await flow.fetch("SELECT consent_state, source FROM patient_sms_consents")
    assert consent[0]["consent_state"] == "revoked"
    # A new order for the same phone sends nothing at all.
    sent = len(flow.twilio.accepted)
    assert (await flow.order(new_order_id(), patient)).code is AckCode.AA
    assert len(flow.twilio.accepted) == sent
    assert flow.counter("radsched_orders_total", modality="CR", outcome="deferred_opted_out") == 1
    # START re-subscribes (one text), and the consent record follows.
    assert "subscribed again" in await converse(flow, patient, "START")
    consent = await flow.fetch("SELECT consent_state FROM patient_sms_consents")
    assert consent[0]["consent_state"] == "granted"


async def test_stop_from_a_number_without_conversation_is_recorded(flow: Flow) -> None:
    stranger = Patient()
    assert "no more texts" in await converse(flow, stranger, "STOP")
    rows = await flow.fetch("SELECT consent_state, phone_hash FROM patient_sms_consents")
    assert [(r["consent_state"], r["phone_hash"]) for r in rows] == [
        ("revoked", flow.hash_of(stranger))
    ]


async def test_conversation_expires_after_24_hours_without_a_text(flow: Flow) -> None:
    patient = Patient()
    await flow.order(new_order_id(), patient)
    await flow.texts(1)
    flow.clock.advance(hours=23, minutes=59)
    assert await flow.engine.fire_due() == 0
    flow.clock.advance(minutes=2)
    assert await flow.engine.fire_due() == 1
    conv = await flow.conversation(patient)
    assert conv["state"] == "expired" and conv["phi"] is None
    order = (await flow.fetch("SELECT state, deferred_reason, phi FROM orders"))[0]
    assert tuple(order) == ("deferred", "expired", None)
    assert len(flow.twilio.accepted) == 1  # expiry sends nothing (it could be night)


async def test_quiet_hours_delay_first_contact_until_morning(
    database_url: str, data_dir: Path, twilio: TwilioDouble
) -> None:
    clock = Clock()
    clock.now = clock.now.replace(hour=3)  # 23:00 in New York
    async with start_flow(database_url, data_dir, twilio, clock, quiet_hours="20:00-09:00") as flow:
        patient = Patient()
        assert (await flow.order(new_order_id(), patient)).code is AckCode.AA
        assert await flow.engine.fire_due() == 0
        assert (await flow.conversation(patient))["state"] == "pending_first_contact"
        clock.advance(hours=10)  # 09:00 in New York
        flow.engine.wake_timer()  # the daemon's own timer task sends it (no manual pass)
        assert "YES" in (await flow.texts(1))[0].body
        assert (await flow.conversation(patient))["state"] == "awaiting_consent"


async def test_ris_down_mid_conversation_waits_and_continues(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    async with SimRis(default_calendar(clock=clock)) as sim:
        await sim.start()
        async with start_flow(
            database_url,
            data_dir,
            twilio,
            clock,
            ris_addr=f"127.0.0.1:{sim.port}",
            ris_timeout_s=0.5,
        ) as flow:
            patient = Patient()
            await flow.order(new_order_id(), patient)
            await flow.texts(1)
            assert "Downtown" in await converse(flow, patient, "yes")
            sim.set_faults(drop=True)
            answer = await converse(flow, patient, "1")
            assert "shortly" in answer and SCHEDULING_PHONE not in answer
            conv = await flow.conversation(patient)
            assert conv["state"] == "loading_slots" and conv["phi"] is not None
            sent = len(flow.twilio.accepted)
            # Still down at the first retry: no second "shortly" text.
            clock.advance(seconds=15)
            await flow.engine.fire_due()
            await flow.engine.drain()
            assert len(flow.twilio.accepted) == sent
            # The RIS is back: the next retry lists the times without the patient writing again.
            sim.clear_faults()
            clock.advance(seconds=30)
            await flow.engine.fire_due()
            await flow.engine.drain()
            slots = (await flow.texts(sent + 1))[-1].body
            assert "Downtown Imaging" in slots and "2 " in slots
            assert (await flow.conversation(patient))["state"] == "choosing_slot"


async def test_ris_down_past_the_wait_defers_to_staff(
    database_url: str, data_dir: Path, twilio: TwilioDouble, clock: Clock
) -> None:
    async with SimRis(default_calendar(clock=clock)) as sim:
        await sim.start()
        async with start_flow(
            database_url,
            data_dir,
            twilio,
            clock,
            ris_addr=f"127.0.0.1:{sim.port}",
            ris_timeout_s=0.5,
        ) as flow:
            patient = Patient()
            await flow.order(new_order_id(), patient)
            await flow.texts(1)
            assert "Downtown" in await converse(flow, patient, "yes")
            sim.set_faults(drop=True)
            assert "shortly" in await converse(flow, patient, "1")
            # RIS_WAIT_MAX_MIN (30) passes with the RIS still silent: then the call-us text.
            for _ in range(17):
                clock.advance(minutes=2)
                await flow.engine.fire_due()
                await flow.engine.drain()
            # consent, locations, "shortly", then call-us: awaited, the outbox sends after commit
            assert SCHEDULING_PHONE in (await flow.texts(4))[-1].body
            conv = await flow.conversation(patient)
            assert conv["state"] == "deferred_to_phone" and conv["phi"] is None
            order = (await flow.fetch("SELECT state, deferred_reason FROM orders"))[0]
            assert tuple(order) == ("deferred", "ris_unavailable")


async def test_modality_switch_through_the_cli_applies_in_the_running_daemon(flow: Flow) -> None:
    settings = flow.daemon.settings
    modalities = flow.engine.modalities
    assert modalities is not None

    async def switch(enabled: bool, note: str) -> None:
        modalities.notified.clear()
        await change_modality(settings, "cr", enabled=enabled, by="dr.ops", note=note)
        await asyncio.wait_for(modalities.notified.wait(), 10)

    await switch(False, "CR room closed for maintenance")
    first = Patient()
    await flow.order(new_order_id(), first)
    assert SCHEDULING_PHONE in (await flow.texts(1))[0].body
    await switch(True, "reopened")
    second = Patient()
    await flow.order(new_order_id(), second)
    assert "YES" in (await flow.texts(2))[-1].body
    audit = await flow.fetch(
        "SELECT changed_by, item, old_value, new_value, note FROM config_audit ORDER BY id"
    )
    assert [tuple(r) for r in audit] == [
        (
            "dr.ops",
            "modality:CR",
            "enabled (default)",
            "disabled",
            "CR room closed for maintenance",
        ),
        ("dr.ops", "modality:CR", "disabled", "enabled", "reopened"),
    ]
    listed = {
        code: (enabled, source) for code, enabled, source, _ in await show_modalities(settings)
    }
    assert listed["CR"] == (True, "config") and listed["DX"] == (True, "default")


async def test_carrier_opt_out_revokes_consent_and_ends_the_conversation(flow: Flow) -> None:
    patient = Patient()
    flow.twilio.refuse(patient.e164, 21610)
    await flow.order(new_order_id(), patient)
    await flow.twilio.wait_requests(1)

    async def ended() -> bool:
        return (await flow.conversation(patient))["ended_at"] is not None

    # The sender reports the refusal after its own commit.
    await eventually(ended, timeout=10, what="the conversation ended")
    consent = await flow.fetch("SELECT consent_state, source FROM patient_sms_consents")
    assert tuple(consent[0]) == ("revoked", "twilio-21610")


async def test_invalid_number_at_the_carrier_hands_the_order_to_staff(flow: Flow) -> None:
    patient = Patient()
    flow.twilio.refuse(patient.e164, 21211)
    await flow.order(new_order_id(), patient)
    await flow.twilio.wait_requests(1)

    async def ended() -> bool:  # reported after the sender's commit
        return (await flow.conversation(patient))["ended_at"] is not None

    await eventually(ended, timeout=10, what="the conversation ended")
    order = (await flow.fetch("SELECT state, deferred_reason, phi FROM orders"))[0]
    assert tuple(order) == ("deferred", "not_textable", None)
    assert await flow.fetch("SELECT * FROM patient_sms_consents") == []  # not an opt-out


async def test_hash_phone_matches_the_daemon(flow: Flow) -> None:
    patient = Patient()
    formatted = f"({patient.area}) {patient.exchange}-{patient.line}"
    assert hash_phone(formatted, flow.daemon.hash_key) == (patient.e164, flow.hash_of(patient))
    assert hash_phone("12345", flow.daemon.hash_key) is None
